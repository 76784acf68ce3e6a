-- Recipe images in the cache: reused while the recipe and its inputs stay the same, rebuilt
-- exactly when they change; one build when two runs ask at once; bad recipes get errors that
-- name the recipe and line, and leave nothing in the cache. Driven through `provium image`, as
-- a user would. Each run's recipe is unique (its run id), so each run builds for real.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

local dir = st.tmpdir("recipes")
local run_id = dir:match("XXXXXX$") or dir:sub(-6)
local name = "cachetest-" .. run_id:lower():gsub("[^a-z0-9]", "x")
local pname = name:gsub("%p", "%%%0") -- name as a Lua pattern

local write = st.write

local function recipe(extra)
    write(dir .. "/images/" .. name .. ".lua", string.format([[
-- a recipe made by image_cache.test.lua
packages { "hello" }
copy("/etc/greeting", "greeting.txt")
write("/etc/run-id", %q)
modules { "dummy" }
cmdline "provium.cachetest=1"
%s
]], run_id, extra or ""))
end

local function build(args)
    return st.sh(string.format("cd %s && %s image build %s", dir, provium.executable, args or name))
end

-- "<name> <key> <dir>" from a successful build's stdout.
local function key_of(out)
    return out:match(pname .. " (%x+) ")
end

local images = '"${XDG_CACHE_HOME:-$HOME/.cache}/provium/images"'

-- Directories in the cache for image n: complete entries and half-built ones alike.
local function entries(n)
    local out = st.sh("ls -d " .. images .. "/" .. (n or name) .. "-* 2>/dev/null || true")
    local count = 0
    for line in out:gmatch("[^\n]+") do
        if not line:match("%.lock$") and not line:match("%.log$") and not line:match("%.json$") then
            count = count + 1
        end
    end
    return count
end

st.sh("mkdir -p " .. dir .. "/images")
write(dir .. "/images/greeting.txt", "hello from the host\n")
-- Whatever tests ran: the recipe's image does not outlive the file.
st.at_file_end(function() st.sh(provium.executable .. " image rm " .. name) end)

-- The recipe as first written, built by whichever test needs it first (the first test checks
-- that build): {out, code, key}, until a test removes the image. Each call writes the recipe
-- back as it was, so a test that edits it leaves nothing behind for the next.
local first_build
local function built()
    recipe()
    if not first_build then
        local out, code = build()
        first_build = { out = out, code = code, key = key_of(out) }
    end
    return first_build
end

test("a new recipe is built, then found in the cache", function(t)
    local b = built()
    local out, code = b.out, b.code
    t:eq(code, 0, out)
    t:match(out, "building")
    local first = b.key
    t:ok(first, out)
    out, code = build()
    t:eq(code, 0, out)
    t:ok(not out:find("building"), "second build reuses the entry: " .. out)
    t:eq(key_of(out), first)
end)

test("a test file boots the recipe beside it (files, package, module, cmdline), with an event", function(t)
    built()
    write(dir .. "/boot.test.lua", string.format([[
test("boots", function(t)
    local vm = provium:vm("v", %q):boot()
    t:eq(vm:read_file("/etc/greeting"), "hello from the host\n")
    t:match(vm:run("hello"):assert_ok().stdout, "Hello, world!")
    vm:wait_for_file("/sys/module/dummy", 20) -- recipe modules load at boot, after the base's
    -- the default command line, then the recipe's addition, then what the host adds itself
    t:match(vm:read_file("/proc/cmdline"),
            "^console=ttyS0 .*cryptomgr%%.notests.* provium%%.cachetest=1 provium%%.ports=5\n$")
end)
]], name))
    local out, code = st.sh(string.format("cd / && %s --accel tcg --events %s/ev.mp %s/boot.test.lua",
                                          provium.executable, dir, dir))
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/ev.mp", "image.resolve"), 1, out)
    t:ok(not out:find("building"), "found in the cache: " .. out)
end)

test("a file goes on while one of its VMs waits for its image to build", function(t)
    local img = name .. "-async"
    write(dir .. "/images/" .. img .. ".lua",
          'packages { "hello" }\nwrite("/etc/run-id", "' .. run_id .. '-async")\n')
    -- The other VM keeps answering while the image builds: the build runs in the thread pool,
    -- not on the file's loop. "building" = the build log exists and the entry does not yet.
    write(dir .. "/async.test.lua", string.format([[
local function building()
    local p = io.popen([==[ls %s 2>/dev/null]==])
    local ls = p:read("a")
    p:close()
    return ls:find("%s%%-%%x+%%.log") ~= nil and ls:find("%s%%-%%x+\n") == nil
end
local other = provium:vm("other"):boot()
test("goes on", function(t)
    local done, during = false, 0
    provium:parallel(function()
        provium:vm("new", %q):boot()
        done = true
    end, function()
        while not done do
            other:run("true"):assert_ok()
            if building() then during = during + 1 end
        end
    end)
    t:ok(during >= 3, "requests answered during the build: " .. during)
end)
]], images, (img:gsub("%p", "%%%0")), (img:gsub("%p", "%%%0")), img))
    local out, code = st.sh(string.format("%s --accel tcg %s/async.test.lua", provium.executable, dir))
    t:eq(code, 0, out)
    t:match(out, "building")
    st.sh(provium.executable .. " image rm " .. img)
end)

test("a lab fixture is rebuilt when a recipe its VMs boot changes", function(t)
    local img, fx = name .. "-lab", name .. "-labfx"
    local function lab_recipe(text)
        write(dir .. "/images/" .. img .. ".lua", string.format('write("/etc/greeting", %q)\n', text))
    end
    write(dir .. "/lab.test.lua", string.format([[
test("lab", function(t)
    local lab = provium:lab_fixture(%q, function(lab) lab:vm("a", %q):boot() end)
    t:eq(lab.a:read_file("/etc/greeting"), os.getenv("EXPECT"))
end)
]], fx, img))
    local function run(expect, events)
        return st.sh(string.format("EXPECT=%s %s --accel tcg --events %s %s/lab.test.lua", expect,
                                   provium.executable, events, dir))
    end
    lab_recipe("one")
    local out, code = run("one", dir .. "/lab1.mp")
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/lab1.mp", "fixture.build"), 1, out)
    out, code = run("one", dir .. "/lab2.mp")
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/lab2.mp", "fixture.build"), 0, "unchanged: restored")
    lab_recipe("two")
    out, code = run("two", dir .. "/lab3.mp")
    t:eq(code, 0, out)
    t:eq(st.count_events(dir .. "/lab3.mp", "fixture.build"), 1, "the recipe changed: rebuilt")
    st.sh(provium.executable .. " cache clear fixtures " .. fx)
    st.sh(provium.executable .. " image rm " .. img)
end)

test("touching the recipe reuses the entry; editing it or a copied file rebuilds", function(t)
    local first = built().key
    st.sh("touch " .. dir .. "/images/" .. name .. ".lua")
    local out = build()
    t:eq(key_of(out), first, out)
    t:ok(not out:find("building"), out)

    recipe("-- a comment is part of the recipe's content")
    out = build()
    local edited = key_of(out)
    t:ok(edited and edited ~= first, out)
    t:match(out, "building")

    recipe()
    write(dir .. "/images/greeting.txt", "changed on the host\n")
    out = build()
    local changed = key_of(out)
    t:ok(changed and changed ~= first and changed ~= edited, out)
    t:match(out, "building")

    write(dir .. "/images/greeting.txt", "hello from the host\n")
    out = build()
    t:eq(key_of(out), first, "back to the first inputs, back to the first entry")
    t:ok(not out:find("building"), out)
end)

test("two runs asking for the same new image at once: one builds, the other waits", function(t)
    recipe('write("/etc/concurrent", "yes")')
    local out = st.sh(string.format(
        "cd %s && (%s image build %s > a.out 2>&1 & %s image build %s > b.out 2>&1 & wait); cat a.out b.out",
        dir, provium.executable, name, provium.executable, name))
    local _, builds = out:gsub("provium: image " .. pname .. ": building", "")
    t:eq(builds, 1, out)
    local _, waits = out:gsub("another process is building it", "")
    local _, done = out:gsub(pname .. " %x+ /", "")
    t:eq(done, 2, out)
    t:ok(waits <= 1, out)
end)

local function bad(t, body, want)
    local before = entries()
    write(dir .. "/images/bad.lua", "-- line 1\n" .. body .. "\n")
    local out, code = build("bad")
    t:eq(code, 1, out)
    t:match(out, want)
    t:eq(entries(), before)
    t:eq(entries("bad"), 0, "nothing cached for the bad recipe")
    -- only the bad recipe's own: files running beside this one resolve their images meanwhile
    t:eq(st.sh("ls -a " .. images .. " | grep -c '^\\.resolve-bad-' || true"), "0\n", "no resolver leftovers")
end

test("an unknown package is named with its line", function(t)
    bad(t, 'packages { "hello" }\npackages { "no-such-package-provium" }',
        "images/bad%.lua:3: package 'no%-such%-package%-provium' is not in apt's package lists")
end)

test("a package for another architecture is named with its line", function(t)
    bad(t, 'packages { "hello:arm64" }', "images/bad%.lua:2: package 'hello:arm64'.*amd64")
end)

test("a Lua error in the recipe is reported with its line", function(t)
    bad(t, 'local x = nil\nx.y = 1', "images/bad%.lua:3: attempt to index a nil value")
end)

test("a recipe that raises no message, holds a string that is not UTF-8 or allocates 1 GiB: each named", function(t)
    bad(t, 'error()', "image bad: recipe images/bad%.lua: raised an error that is a nil, not a message")
    bad(t, 'error({})', "image bad: recipe images/bad%.lua: raised an error that is a table, not a message")
    bad(t, 'error("plain", 0)', "image bad: recipe images/bad%.lua: plain")
    bad(t, 'write("/etc/x", "\255\254")', "image bad: recipe images/bad%.lua: a string in it is not UTF%-8")
    bad(t, 'local s = string.rep("x", 1 << 30)', "image bad: recipe images/bad%.lua: not enough memory %(its Lua may use 64 MiB%)")
end)

test("a copy from a path that does not exist names the recipe line and the path", function(t)
    bad(t, 'copy("/etc/x", "no-such-file.txt")',
        "images/bad%.lua:2: copy /etc/x: source .*no%-such%-file%.txt: No such file or directory")
end)

test("an unknown kernel module is named with its line", function(t)
    bad(t, 'modules { "no_such_module" }', "images/bad%.lua:2: module 'no_such_module' is not in kernel")
end)

test("a kernel the recipes do not know, and a module asked of the lean kernel, are named with their line", function(t)
    bad(t, 'kernel "tiny"', 'images/bad%.lua:2: kernel: expected "cloud" or "lean", got "tiny"')
    bad(t, 'kernel "lean"\nkernel "cloud"', "images/bad%.lua:3: kernel: given twice")
    bad(t, 'kernel "lean"\nmodules { "dummy" }',
        "images/bad%.lua:3: module 'dummy': the lean kernel %(kernel \"lean\" on line 2%) has no modules")
end)

test("image ls lists the recipe's entries and image rm removes them", function(t)
    built()
    local out = st.sh(provium.executable .. " image ls")
    t:match(out, pname)
    out = st.sh(provium.executable .. " image rm " .. name)
    first_build = nil -- gone: the next test that needs it builds it again
    t:match(out, "removed image " .. pname)
    t:eq(entries(), 0)
    t:ok(not st.sh(provium.executable .. " image ls"):find(name, 1, true))
end)

-- A recipe of its own (a new key every run), so that its build really runs.
local function slow_recipe(which)
    local n = name .. "-" .. which
    write(dir .. "/images/" .. n .. ".lua", string.format('packages { "hello" }\nwrite("/etc/run-id", %q)\n', run_id))
    st.at_file_end(function() st.sh(provium.executable .. " image rm " .. n) end)
    return n
end

test("the wrapper image builds run under stops them at their timeout, with all they started", function(t)
    -- what `provium __build PPID TIMEOUT PROGRAM...` does for every build script, on a program
    -- that outlives its timeout and leaves children (a build's own time cannot be relied on)
    local t0 = os.time()
    local out, code = st.sh(string.format("%s __build $$ 1 sh -c 'sleep 4711 & sleep 4712'; echo status $?",
                                          provium.executable))
    t:contains(out, "status 142", "killed by SIGALRM (128 + 14), which builds report as their timeout")
    t:ok(os.time() - t0 < 20, "at its timeout")
    for _ = 1, 100 do
        if st.sh("pgrep -f '[s]leep 471[12]' || true") == "" then break end
        st.sh("sleep 0.05")
    end
    t:eq(st.sh("pgrep -f '[s]leep 471[12]' || true"), "", "nothing it started is left")
end)

test("an image build whose provium is killed with SIGKILL leaves no process of it behind", function(t)
    local n = slow_recipe("killed")
    local pidfile = dir .. "/" .. n .. ".pid"
    st.sh(string.format("(cd %s && %s image build %s > /dev/null 2>&1 & echo $! > %s) > /dev/null 2>&1",
                        dir, provium.executable, n, pidfile))
    -- the namespace is read from the build script itself, not the wrapper it runs under (provium
    -- __build ... build-recipe-image) nor the resolve before it; a process that ends between
    -- pgrep and readlink is skipped
    local own, ns = st.sh("readlink /proc/self/ns/pid"):gsub("%s+$", ""), nil
    for _ = 1, 600 do
        for pid in st.sh("pgrep -af '[b]uild-recipe-image' | grep -v -e __build -e --resolve | grep -F " .. n ..
                         " | cut -d' ' -f1"):gmatch("%d+") do
            local this = st.sh("readlink /proc/" .. pid .. "/ns/pid 2>/dev/null || true"):gsub("%s+$", "")
            if this:match("^pid:%[%d+%]$") then ns = this break end
        end
        if ns then break end
        st.sh("sleep 0.05")
    end
    t:ok(ns, "its build script started")
    t:ne(ns, own, "a PID namespace of its own")
    st.sh("kill -9 " .. st.read(pidfile):match("%d+"))
    local left
    for _ = 1, 100 do
        left = st.sh("for p in /proc/[0-9]*; do readlink $p/ns/pid; done 2>/dev/null | grep -cxF '" .. ns .. "' || true")
        if left == "0\n" then break end
        st.sh("sleep 0.05")
    end
    t:eq(left, "0\n", "no process in its namespace")
    -- what the killed script left beside the entry goes with the next build of the key
    local out, code = st.sh(string.format("cd %s && %s image build %s", dir, provium.executable, n))
    t:eq(code, 0, out)
    t:eq(st.sh("ls -d " .. images .. "/" .. n .. "-*.tmp.* 2>/dev/null || true"), "", "no staging left")
end)

test("a resolve's spec file left by a killed provium goes with the next resolve; one in use stays", function(t)
    t:eq(built().code, 0, built().out)
    -- as a provium killed mid-resolve leaves it, one whose provium is still resolving (it holds
    -- the file's flock), and one just made (not yet locked)
    local stem = images .. "/.resolve-" .. name .. "-"
    st.sh("echo '{}' > " .. stem .. "dead && touch -d '-2 min' " .. stem .. "dead")
    st.sh("echo '{}' > " .. stem .. "held && touch -d '-2 min' " .. stem .. "held")
    st.sh("echo '{}' > " .. stem .. "new")
    st.sh("(flock " .. stem .. "held sleep 4713 &) > /dev/null 2>&1")
    st.at_file_end(function()
        st.sh("pkill -f '[s]leep 4713'; rm -f " .. stem .. "held " .. stem .. "new " .. stem .. "dead")
    end)
    for _ = 1, 100 do
        if st.sh("pgrep -f '[s]leep 4713' || true") ~= "" then break end
        st.sh("sleep 0.05")
    end
    local out, code = build()
    t:eq(code, 0, out)
    t:eq(st.sh("cd " .. images .. " && ls -a | grep '^\\.resolve-" .. pname:gsub("%%", "") ..
               "-' | sort | tr '\\n' ' '"), ".resolve-" .. name .. "-held .resolve-" .. name .. "-new ",
         "the dead one removed; the held and the new one kept")
end)

test("a cut file in an image's cache entry is found before it boots, and the entry is rebuilt", function(t)
    local b = built()
    t:eq(b.code, 0, b.out)
    local entry = st.sh("ls -d " .. images .. "/" .. name .. "-" .. b.key):gsub("%s+$", "")
    local manifest = st.read(entry .. "/manifest")
    local want = manifest:match("\ninitrd_bytes=(%d+)\n")
    t:ok(want, "the manifest records the initrd's size")
    st.sh("truncate -s 4096 " .. entry .. "/initrd")
    local out, code = build()
    t:eq(code, 0, out)
    t:contains(out, "is damaged (initrd is 4096 bytes, its manifest says " .. want .. "): rebuilding")
    t:eq(key_of(out), b.key, "the same key")
    t:eq(st.sh("stat -c %s " .. entry .. "/initrd"), want .. "\n", "whole again")
end)

test("a file of an image's cache entry changed in place at its own length is found, and the entry is rebuilt", function(t)
    local b = built()
    t:eq(b.code, 0, b.out)
    local entry = st.sh("ls -d " .. images .. "/" .. name .. "-" .. b.key):gsub("%s+$", "")
    t:match(st.read(entry .. "/provium.sums") or "", "initrd %d+ ", "the entry's sums are recorded")
    local size = st.sh("stat -c %s " .. entry .. "/initrd")
    local before = st.sh("cksum < " .. entry .. "/initrd")
    st.sh("printf 'XXXX' | dd of=" .. entry .. "/initrd bs=1 seek=1000 conv=notrunc 2>/dev/null")
    t:eq(st.sh("stat -c %s " .. entry .. "/initrd"), size, "the same length")
    local out, code = build()
    t:eq(code, 0, out)
    t:contains(out, "is damaged (initrd changed since it was built: its XXH3 is not the recorded one): rebuilding")
    t:eq(st.sh("cksum < " .. entry .. "/initrd"), before, "its bytes as built")
    -- a file only touched (chmod changes its ctime) but whole: hashed again, taken, not rebuilt,
    -- and its record refreshed with its new identity
    local record = st.read(entry .. "/provium.sums"):match("initrd [^\n]*")
    st.sh("sleep 0.01; chmod 0644 " .. entry .. "/initrd")
    out, code = build()
    t:eq(code, 0, out)
    t:eq(out:find("damaged", 1, true), nil, out)
    t:eq(out:find("building", 1, true), nil, "not rebuilt: " .. out)
    local refreshed = st.read(entry .. "/provium.sums"):match("initrd [^\n]*")
    t:ne(refreshed, record, "the record has the file's new ctime")
    t:eq(refreshed:match("%x+$"), record:match("%x+$"), "and the same sum")
end)
