-- Watching a run: the status line on a terminal (and nowhere else), and the summary at the end
-- of every run, above the final counts.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local sh = st.sh

local function watched_dir()
    local dir = st.tmpdir("watch")
    local f = assert(io.open(dir .. "/w.test.lua", "w"))
    f:write([[
test("boots and waits a second", function(t)
    local vm = provium:vm("watched"):boot()
    vm:run("sleep 1.2")
end)
test("fails", function(t) t:eq(1, 2) end)
test("quick", function(t) t:ok(true) end)
]])
    f:close()
    return dir
end

test("under a terminal the status line is drawn and redrawn in place; in a pipe never", function(t)
    local dir = watched_dir()
    local tty = sh(string.format("script -qec '%s --accel tcg %s' /dev/null", provium.executable, dir))
    t:match(tty, "\r\27%[K%[0/1 files%] 1 VM, pool %d+/%d+ MiB | w%.test%.lua: boots and waits a second %ds")
    t:match(tty, "%[1/1 files%]", "the count moves")
    t:match(tty, "2 passed, 1 failed, 0 skipped\r?\n$")
    local piped = sh(string.format("%s --accel tcg %s | cat", provium.executable, dir))
    t:ok(not piped:find("files]", 1, true), "no status line in a pipe:\n" .. piped)
    t:ok(not piped:find("\27[K", 1, true), "no terminal codes in a pipe")
    local never = sh(string.format("script -qec '%s --accel tcg --progress never %s' /dev/null", provium.executable, dir))
    t:ok(not never:find("files]", 1, true), "--progress never")
    local always = sh(string.format("%s --accel tcg --progress always %s | cat", provium.executable, dir))
    t:match(always, "%[0/1 files%]", "--progress always, even in a pipe")
    local out, code = st.run(dir, "--progress sometimes")
    t:eq(code, 2)
    t:contains(out, "--progress must be auto, always or never, not 'sometimes'")
end)

test("every run ends with the slowest tests, VMs and VM-seconds, the cache, and the failures again", function(t)
    local dir = watched_dir()
    local out, code = st.run(dir, "--progress never")
    t:eq(code, 1, out)
    local tail = out:match("\nslowest tests:\n.*$")
    t:ok(tail, out)
    t:match(tail, "^\nslowest tests:\n +%d+%.%d%ds  [^\n]*/w%.test%.lua: boots and waits a second\n")
    t:match(tail, "\nVMs: 1 booted, 0 restored from fixtures and snapshots; %d+ VM%-seconds\n")
    t:match(tail, "\ncache: images 1 found, 0 built; fixtures 0 found, 0 built\n")
    t:match(tail, "\nfailed:\n  [^\n]*/w%.test%.lua: fails\n      [^\n]*/w%.test%.lua:5: expected 2, got 1\n" ..
                  "to look inside its VMs: provium %-%-keep%-on%-failure %-k 'fails' [^\n]*/w%.test%.lua, then provium shell[^\n]*\n" ..
                  "2 passed, 1 failed, 0 skipped\n$", "the failures just above the final line, and how to look inside")
    local vm_seconds = tonumber(tail:match("; (%d+) VM%-seconds"))
    t:ok(vm_seconds >= 1 and vm_seconds < 60, "VM-seconds of a VM that lived over a second: " .. vm_seconds)
    -- TAP's stdout is TAP only
    local tap = sh(string.format("%s --accel tcg --tap %s 2>/dev/null", provium.executable, dir))
    t:ok(not tap:find("slowest tests", 1, true), "no summary in TAP")
end)
