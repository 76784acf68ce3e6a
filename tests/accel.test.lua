-- --accel auto tells the truth about KVM: a second provium runs on hosts whose KVM works,
-- hangs the kernel, or fails at once, each played by tests/lib/fake-kvm-qemu (whatever this
-- host has: the fake turns accel=kvm into TCG and PROVIUM_KVM_DEVICE stands in for /dev/kvm).
-- Every case has its own cache directory, so verdicts are probed, cached and re-probed here
-- and never touch the user's cache.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)

-- A fresh host: a work dir with the boot test, its own copy of the fake QEMU and a cache.
local function host(kvm)
    local h = { dir = st.workdir("accel_boot"), kvm = kvm }
    st.sh(string.format("cp %s/lib/fake-kvm-qemu %s/qemu && mkdir %s/cache", here, h.dir, h.dir))
    h.log = h.dir .. "/qemu.log"
    return h
end

-- The QEMU the fake really runs: the one this run uses.
local real_qemu = os.getenv("PROVIUM_QEMU") or "qemu-system-x86_64"

-- Runs provium on h with extra options; returns output, exit status and the fake's log.
local function run(h, extra, env)
    st.sh(": > " .. h.log)
    local out, code = st.sh(string.format(
        "FAKE_KVM=%s FAKE_KVM_LOG=%s FAKE_KVM_PIDS=%s/pids FAKE_KVM_REAL=%s PROVIUM_QEMU=%s/qemu " ..
        "PROVIUM_KVM_DEVICE=/dev/null PROVIUM_KVM_PROBE_TIMEOUT=4 XDG_CACHE_HOME=%s/cache " ..
        "%s %s %s %s/accel_boot.test.lua",
        h.kvm, h.log, h.dir, real_qemu, h.dir, h.dir, env or "", provium.executable,
        extra or "", h.dir))
    return out, code, io.open(h.log):read("a")
end

local function count(s, pattern)
    local _, n = s:gsub(pattern, "")
    return n
end

-- The QEMUs the fake started that are still alive ("" when none).
local function alive(h)
    return (st.sh("for p in $(cat " .. h.dir .. "/pids 2>/dev/null); do " ..
        "kill -0 $p 2>/dev/null && echo $p; done; true"))
end

-- Runs body(h) on a fresh host and removes the host whatever happens.
local function with_host(kvm, body)
    local h = host(kvm)
    local ok, err = pcall(body, h)
    st.sh("rm -rf " .. h.dir)
    if not ok then error(err, 0) end
end

test("a KVM that hangs the kernel: auto says why once, uses TCG, and the tests pass", function(t)
  with_host("silent", function(h)
    local out, code, log = run(h, "-v")
    t:eq(code, 0, out)
    t:eq(count(out, "KVM probe: the guest printed nothing in 4 s; using TCG"), 1, out)
    t:eq(count(out, "using TCG"), 1, "said once\n" .. out)
    t:eq(log, "probe\nboot tcg\n", "one probe, then the boot under TCG")
    t:eq(alive(h), "", "no QEMU left behind, the probe's included")
  end)
end)

test("the verdict is cached, shown by provium doctor, and probed again when QEMU changes",
    function(t) with_host("silent", function(h)
        local _, _, log1 = run(h)
        t:eq(log1, "probe\nboot tcg\n")
        local out, code, log2 = run(h)
        t:eq(code, 0, out)
        t:match(out, "KVM probe %(cached %d+ s ago; provium doctor%): the guest printed nothing")
        t:eq(log2, "boot tcg\n", "the cached verdict: no probe")
        local doc = st.sh(string.format(
            "PROVIUM_QEMU=%s/qemu PROVIUM_KVM_DEVICE=/dev/null XDG_CACHE_HOME=%s/cache %s doctor",
            h.dir, h.dir, provium.executable))
        t:match(doc, "KVM verdict   KVM does not run the kernel: the guest printed nothing in 4 s")
        t:match(doc, "probed %d+ s ago, the probe took [%d.]+ s")
        t:match(doc, "%-%-accel auto  uses TCG")
        -- an upgraded QEMU is another key
        st.sh("sleep 1; touch " .. h.dir .. "/qemu")
        local _, _, log3 = run(h)
        t:eq(log3, "probe\nboot tcg\n", "probed again after QEMU changed")
        -- a verdict file that is not one is ignored, never trusted
        st.sh("for f in " .. h.dir .. "/cache/provium/accel/*.verdict; do printf 'verdict=kvm\\n' > $f; done")
        local out4, _, log4 = run(h)
        t:eq(log4, "probe\nboot tcg\n", "a bad verdict file is probed again\n" .. out4)
        -- a verdict from a shorter bound than today's is probed again
        local _, _, log5 = run(h, "", "PROVIUM_KVM_PROBE_TIMEOUT=5")
        t:eq(log5, "probe\nboot tcg\n", "a longer bound probes again")
        local _, _, log6 = run(h, "", "PROVIUM_KVM_PROBE_TIMEOUT=5")
        t:eq(log6, "boot tcg\n", "and then that verdict holds")
    end) end)

test("a KVM that works: auto takes it, silently, and caches that too", function(t)
  with_host("works", function(h)
    local out, code, log = run(h, "-v", "PROVIUM_KVM_PROBE_TIMEOUT=60")
    t:eq(code, 0, out)
    t:eq(count(out, "using TCG"), 0, out)
    t:contains(out, "provium: using KVM (the probe booted the kernel)")
    t:eq(log, "probe\nboot kvm\n")
    local out2, _, log2 = run(h, "-v", "PROVIUM_KVM_PROBE_TIMEOUT=60")
    t:contains(out2, "provium: using KVM (a cached verdict)")
    t:eq(log2, "boot kvm\n")
  end)
end)

-- QEMU failing under KVM: its own words are the reason; only a failure about KVM is cached.
local failures = {
    { kvm = "exits", cached = true, said = "KVM probe: QEMU exited with status 1 under KVM: " ..
        "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0; using TCG" },
    { kvm = "killed", cached = false, said = "KVM probe: QEMU was killed by signal 9 under KVM " ..
        "before the guest reached init; using TCG" },
}
for _, f in ipairs(failures) do
    test("a QEMU that fails under KVM (" .. f.kvm .. "): said, and cached only if about KVM",
        function(t)
            with_host(f.kvm, function(h)
                local out, code, log = run(h)
                t:eq(code, 0, out)
                t:contains(out, f.said)
                t:eq(log, "probe\nboot tcg\n")
                local _, _, log2 = run(h)
                t:eq(log2, f.cached and "boot tcg\n" or "probe\nboot tcg\n",
                    f.cached and "the verdict was kept" or "probed again: the verdict was not kept")
            end)
        end)
end

test("--accel kvm on a KVM that hangs the kernel fails the boot at once, saying why", function(t)
  with_host("silent", function(h)
    local out, code, log = run(h, "--accel kvm --boot-timeout 300")
    t:eq(code, 1, out)
    t:match(out, "provium: %-%-accel kvm: KVM probe: the guest printed nothing in 4 s; boots will fail")
    t:match(out, "vm accelvm: boot: %-%-accel kvm, but KVM cannot run the image's kernel " ..
        "here %(KVM probe: the guest printed nothing in 4 s%): use %-%-accel tcg")
    t:eq(log, "probe\n", "no QEMU started for the boot")
    t:eq(count(out, "timed out"), 0, "not a timeout")
    -- and where /dev/kvm does not even open
    local out2, code2, log2 = run(h, "--accel kvm --boot-timeout 300",
        "PROVIUM_KVM_DEVICE=/nonexistent-kvm")
    t:eq(code2, 1, out2)
    t:contains(out2, "provium: --accel kvm: cannot open /nonexistent-kvm: No such file or " ..
        "directory; boots will fail")
    t:contains(out2, "but KVM cannot run the image's kernel here (cannot open /nonexistent-kvm")
    t:eq(log2, "", "no QEMU at all")
  end)
end)

test("a boot that shows no sign of life says so, and under KVM names the flag", function(t)
  with_host("works", function(h)
    local out, code = run(h, "--accel tcg --boot-timeout 3", "FAKE_KVM_BOOT=silent")
    t:eq(code, 1, out)
    t:contains(out, "vm accelvm: boot timed out after 3 s: the guest printed nothing on its " ..
        "console: its kernel did not reach init (check the kernel")
    local out2, code2 = run(h, "--accel kvm --boot-timeout 3",
        "FAKE_KVM_BOOT=silent PROVIUM_KVM_PROBE_TIMEOUT=60")
    t:eq(code2, 1, out2)
    t:contains(out2, "Under KVM that is the sign of a kernel that does not run under this " ..
        "host's KVM: run with --accel tcg")
    t:eq(count(out2, "last console lines"), 0, "no empty console tail")
  end)
end)

test("bad --accel is a clear error before anything runs", function(t)
    local out, code = st.sh(provium.executable .. " --accel fast /nonexistent.test.lua")
    t:eq(code, 2)
    t:eq(out, "provium: --accel must be auto, kvm or tcg, not 'fast'\n")
    for _, bad in ipairs({ "nan", "inf", "-1", "1e7" }) do
        out, code = st.sh(provium.executable .. " --op-timeout " .. bad .. " /nonexistent.test.lua")
        t:eq(code, 2, out)
        t:eq(out, "provium: --op-timeout: expected seconds from 0 to 1000000, got '" .. bad .. "'\n")
    end
end)
