-- provium coverage (and provium-coverage): what a known inner suite exercised in the guest, in
-- text, JSON, over a live socket, and as a page that headless Chromium draws.
-- The inner suite (tests/fixtures/cov_a.lua, cov_b.lua) runs its two files at once, each with a
-- VM named "a": only the events' file and test fields tell their calls apart.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local st = dofile(here .. "/lib/selftest.lua")(here)
local sh = st.sh
local coverage = provium.executable:gsub("provium$", "provium-coverage")

-- What the inner suite makes, by category: "name: calls in tests; results".
local EXPECTED = {
    syscalls = {
        "close: 1 call in 1 test; ok 1",
        "getpid: 4 calls in 2 tests; ok 4",
        "openat: 3 calls in 2 tests; ok 1, ENOENT 2",
    },
    ioctls = { "0x5413: 3 calls in 1 test; ok 1, ENOTTY 2" },
    ops = {
        "exec: 1 call in 1 test; ok 1",
        "hwrng: 2 calls in 2 tests; ok 2", -- each VM's /dev/hwrng seed, once it is up
        "ioctl: 3 calls in 1 test; ok 1, ENOTTY 2",
        "read_file: 1 call in 1 test; ok 1",
        "syscall: 8 calls in 3 tests; ok 6, ENOENT 2",
        "write_file: 1 call in 1 test; ok 1",
    },
}

-- The inner suite's run, once per file (whichever test asks first): its directory and events.
local inner
local function suite(t)
    if inner then return inner end
    local dir = st.workdir("cov_a", "cov_b")
    st.at_file_end(function() sh("rm -rf " .. dir) end)
    local out, code = st.run(dir, "-j 2 --events " .. dir .. "/run.mp")
    t:eq(code, 0, out)
    t:contains(out, "4 passed, 0 failed, 0 skipped", out)
    inner = { dir = dir, events = dir .. "/run.mp" }
    return inner
end

-- The lines of a text report under the heading of a category ("syscalls: 3, 8 calls").
local function section(text, title)
    local body = text:match("\n?" .. title:gsub("%p", "%%%0") .. ": [^\n]*\n(.-)\n%S") or
                 text:match("\n?" .. title:gsub("%p", "%%%0") .. ": [^\n]*\n(.*)$")
    local lines = {}
    for line in (body or ""):gmatch("  ([^\n]+)") do lines[#lines + 1] = line end
    return table.concat(lines, "\n")
end

test("the text report gives each syscall, ioctl and agent operation its exact counts", function(t)
    local ev = suite(t).events
    local out, code = sh(coverage .. " " .. ev)
    t:eq(code, 0, out)
    t:eq(section(out, "syscalls"), table.concat(EXPECTED.syscalls, "\n"), out)
    t:eq(section(out, "ioctl requests"), table.concat(EXPECTED.ioctls, "\n"), out)
    t:eq(section(out, "agent operations"), table.concat(EXPECTED.ops, "\n"), out)
    t:contains(out, "\nlifecycle actions: 2, 2 times\n  pause: 1 time in 1 test; ok 1\n" ..
               "  resume: 1 time in 1 test; ok 1\n", out)
    t:match(out, "\nimages: 1, 2 boots\n  default: 2 boots in 2 tests; ", out)
    t:contains(out, "\nnetwork impairments: none\ndisk faults: none\n")
    t:match(out, "\n%d+ events\n$", "every event is counted for its test")
    local same = sh(provium.executable .. " coverage " .. ev)
    t:eq(same, out, "provium coverage is provium-coverage")
end)

-- The --json document as lines "category|name|calls|tests|results", tests as FILE: test with
-- the directory left out, results as k=v in the document's order.
local JSON_DUMP = [[python3 -c '
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d["version"] == 1 and d["events"] > 0, d
for cid, cat in d["categories"].items():
    for e in cat["entries"]:
        tests = ",".join(sorted(os.path.basename(x) for x in e["tests"]))
        res = ",".join("%s=%d" % kv for kv in e["results"].items())
        extra = " request=%d" % e["request"] if cid == "ioctls" else ""
        print("%s|%s|%d|%s|%s%s" % (cid, e["name"], e["calls"], tests, res, extra))
u = d.get("unexercised")
if u:
    print("unexercised", u["syscalls"]["total"], " ".join(u["syscalls"]["names"]))
' ]]

test("--json gives the same counts and names the tests", function(t)
    local ev = suite(t).events
    sh(coverage .. " --json " .. ev .. " > " .. ev .. ".json")
    local dump, code = sh(JSON_DUMP .. ev .. ".json")
    t:eq(code, 0, dump)
    for _, want in ipairs({
        "syscalls|close|1|cov_b.test.lua: files|ok=1\n",
        "syscalls|getpid|4|cov_a.test.lua: more,cov_a.test.lua: syscalls|ok=4\n",
        "syscalls|openat|3|cov_a.test.lua: syscalls,cov_b.test.lua: files|ok=1,ENOENT=2\n",
        "ioctls|0x5413|3|cov_b.test.lua: ioctls|ok=1,ENOTTY=2 request=21523\n",
        "ops|syscall|8|cov_a.test.lua: more,cov_a.test.lua: syscalls,cov_b.test.lua: files|ok=6,ENOENT=2\n",
        "ops|ioctl|3|cov_b.test.lua: ioctls|ok=1,ENOTTY=2\n",
        "ops|exec|1|cov_a.test.lua: more|ok=1\n",
        "lifecycle|pause|1|cov_a.test.lua: more|ok=1\n",
        "images|default|2|cov_a.test.lua: syscalls,cov_b.test.lua: ioctls|",
    }) do t:contains(dump, want) end
    local n = 0
    for _ in dump:gmatch("\nsyscalls|") do n = n + 1 end
    t:eq(n + (dump:find("^syscalls|") and 1 or 0), 3, dump)
end)

test("--universe syscalls lists the syscalls no test made, and not those made", function(t)
    local ev = suite(t).events
    local out, code = sh(coverage .. " --universe syscalls " .. ev)
    t:eq(code, 0, out)
    local total = tonumber(out:match("\nsyscalls no test made: (%d+) of %d+\n"))
    t:ok(total and total > 300, out)
    local list = " " .. out:match("\nsyscalls no test made: [^\n]*\n(.-)\n%d+ events"):gsub("%s+", " ") .. " "
    t:contains(list, " kexec_load ", "never made")
    t:contains(list, " mount ", "never made")
    for _, made in ipairs({ "getpid", "openat", "close" }) do
        t:eq(list:find(" " .. made .. " ", 1, true), nil, made .. " was made")
    end
    local words = 0
    for _ in list:gmatch("%S+") do words = words + 1 end
    t:eq(words, total, "every name listed once")
    local dump = sh(coverage .. " --json --universe syscalls " .. ev .. " > " .. ev .. ".u.json && " ..
                    JSON_DUMP .. ev .. ".u.json")
    local names = " " .. (dump:match("\nunexercised %d+ ([^\n]*)") or "") .. " "
    t:contains(names, " kexec_load ")
    t:eq(names:find(" getpid ", 1, true), nil, dump)
end)

test("several streams add up, and a run's live socket is read like its file", function(t)
    local s = suite(t)
    local out = sh(coverage .. " " .. s.events .. " " .. s.events)
    t:contains(out, "\n  getpid: 8 calls in 2 tests; ok 8\n", out)
    t:contains(out, "\n  0x5413: 6 calls in 1 test; ok 2, ENOTTY 4\n", out)

    local dir = st.workdir("cov_a", "cov_b")
    local sock = dir .. "/run.sock"
    -- The reader connects before the first VM has booted (seconds), so it sees every op.
    local live, code = sh(string.format(
        "%s --accel tcg -j 2 --events unix:%s %s > %s/run.out 2>&1 & pid=$!; " ..
        "for i in $(seq 200); do [ -S %s ] && break; sleep 0.05; done; %s unix:%s; " ..
        "wait $pid; echo run=$?", provium.executable, sock, dir, dir, sock, coverage, sock))
    sh("rm -rf " .. dir)
    t:eq(code, 0, live)
    t:contains(live, "\nrun=0\n", live)
    t:eq(section(live, "syscalls"), table.concat(EXPECTED.syscalls, "\n"), live)
    t:eq(section(live, "ioctl requests"), table.concat(EXPECTED.ioctls, "\n"), live)
    t:eq(section(live, "agent operations"), table.concat(EXPECTED.ops, "\n"), live)
end)

-- A row of the drawn page: its cells' text ("getpid|4|2|ok 4"), from the DOM Chromium dumps.
local function row(dom, entry)
    local tr = dom:match('<tr data%-entry="' .. entry:gsub("%p", "%%%0") .. '">(.-)</tr>')
    if not tr then return nil end
    tr = tr:gsub("<ul>.-</ul>", "")
    local cells = {}
    for cell in tr:gmatch("<td[^>]*>(.-)</td>") do cells[#cells + 1] = cell:gsub("<[^>]+>", "") end
    return table.concat(cells, "|")
end

test("--html DIR writes a page that headless Chromium draws with those numbers", function(t)
    local _, has = sh("command -v chromium")
    if has ~= 0 then t:skip("chromium is not installed (Debian's chromium; scripts/bootstrap installs it)") end
    local s = suite(t)
    local html = s.dir .. "/html"
    local out, code = sh(coverage .. " --html " .. html .. " " .. s.events)
    t:eq(code, 0, out)
    local page = assert(io.open(html .. "/index.html")):read("a")
    t:eq(page:find("https?://"), nil, "nothing fetched from the network")
    t:eq(page:find("<script src", 1, true), nil, "no external script")
    t:eq(page:find("<link", 1, true), nil, "no external style sheet")
    local dom, dcode = sh(string.format(
        "(HOME=%s timeout 90 chromium --headless --no-sandbox --disable-gpu --user-data-dir=%s/chromium " ..
        "--dump-dom file://%s/index.html 2>/dev/null)", s.dir, s.dir, html))
    t:eq(dcode, 0, dom)
    t:contains(dom, 'data-ready="yes"', "the page's script ran")
    t:eq(row(dom, "syscalls:getpid"), "getpid|4|2|ok 4", dom)
    t:eq(row(dom, "syscalls:openat"), "openat|3|2|ok 1, ENOENT 2")
    t:eq(row(dom, "syscalls:close"), "close|1|1|ok 1")
    t:eq(row(dom, "ioctls:0x5413"), "0x5413|3|1|ok 1, ENOTTY 2")
    t:eq(row(dom, "ops:syscall"), "syscall|8|3|ok 6, ENOENT 2")
    -- Each entry lists its tests; each table starts sorted by calls, most first.
    local openat = dom:match('<tr data%-entry="syscalls:openat">(.-)</tr>') or ""
    t:match(openat, "<li>[^<]*/cov_a%.test%.lua: syscalls</li>")
    t:match(openat, "<li>[^<]*/cov_b%.test%.lua: files</li>")
    t:match(dom, '<table class="sortable" data%-category="syscalls">.-<tbody><tr data%-entry="syscalls:getpid">')
    t:match(dom, '<section id="network"><h2>network impairments</h2><p class="none">none exercised</p>')
end)
