-- Installed like a tool of the distribution: make install into a temporary prefix, and the
-- Debian package built by dpkg-buildpackage, installed into a scratch root and removed; each
-- runs the examples from where it was installed.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local st = dofile(here .. "/lib/selftest.lua")(here)
local root = st.sh("cd " .. here .. "/.. && pwd"):gsub("%s+$", "")
local build = provium.executable:match("^(.*)/provium$")

-- What an installed provium must show: where it found its parts, the documents, the examples.
local function check_installed(t, bin, prefix)
    local out = st.sh(bin .. " doctor")
    t:match(out, "data +" .. prefix:gsub("%p", "%%%0") .. "/share/provium ")
    t:match(out, "agent +" .. prefix:gsub("%p", "%%%0") .. "/libexec/provium/provium%-agent\n")
    t:match(st.sh(bin .. " help debugging"), "^# Debugging a failing test")
    local code
    out, code = st.sh(bin .. " --accel tcg -j 2 --progress never " .. root .. "/examples/")
    t:eq(code, 0, out)
    t:match(out, "%d+ passed, 0 failed, 0 skipped\n$")
end

test("make install PREFIX DESTDIR: an installed provium runs the examples, and uninstalls", function(t)
    if not st.read(build .. "/provium-agent") then -- make check-asan's build borrows the agent
        t:skip(build .. " has no agent of its own (-Dagent=false, as make check-asan's): it cannot be installed alone")
    end
    local dest = st.tmpdir("install")
    local out, code = st.sh(string.format("make -C %s --no-print-directory install BUILD=%s PREFIX=/opt/pv DESTDIR=%s",
                                          root, build, dest))
    t:eq(code, 0, out)
    local prefix = dest .. "/opt/pv"
    for _, f in ipairs({ "bin/provium", "bin/provium-coverage", "libexec/provium/provium-agent",
                         "libexec/provium/provium-vm", "share/provium/scripts/build-default-image",
                         "share/provium/types/provium.lua", "share/man/man1/provium.1",
                         "share/man/man7/provium-lua.7" }) do
        t:ok(st.read(prefix .. "/" .. f), f .. " is installed")
    end
    t:match(st.sh("man -l " .. prefix .. "/share/man/man1/provium.1 2>/dev/null"), "provium %- run test files")
    t:match(st.sh("man -l " .. prefix .. "/share/man/man7/provium-lua.7 2>/dev/null"), "provium%-lua %- the Lua API")
    check_installed(t, prefix .. "/bin/provium", prefix)
    out, code = st.sh(string.format("make -C %s --no-print-directory uninstall BUILD=%s", root, build))
    t:eq(code, 0, out)
    t:ok(not st.read(prefix .. "/bin/provium"), "make uninstall removed it")
end)

test("the .deb: dpkg-buildpackage, installed into a scratch root, runs the examples, removed", function(t)
    local dir = st.tmpdir("deb")
    local out, code = st.sh(string.format(
        "mkdir %s/src && tar -C %s --exclude=./build --exclude='./build-*' --exclude='./obj-*' " ..
        "--exclude=./.git -cf - . | tar -C %s/src -xf - && make -C %s/src --no-print-directory deb >%s/build.log 2>&1 " ..
        "|| tail -40 %s/build.log", dir, root, dir, dir, dir, dir))
    t:eq(code, 0, out)
    local deb = st.sh("ls " .. dir .. "/provium_*_amd64.deb"):gsub("%s+$", "")
    t:match(deb, "provium_[%d.]+_amd64%.deb$")
    t:match(st.sh("dpkg-deb -f " .. deb .. " Depends"), "qemu%-system%-x86")
    local files = st.sh("dpkg-deb -c " .. deb)
    t:match(files, "%./usr/bin/provium\n")
    t:match(files, "%./usr/libexec/provium/provium%-agent\n")
    t:match(files, "%./usr/share/man/man1/provium%.1%.gz\n")
    local scratch = dir .. "/root"
    local dpkg = "dpkg --root=" .. scratch .. " --force-depends --force-script-chrootless "
    out, code = st.sh("mkdir -p " .. scratch .. "/var/lib/dpkg/info " .. scratch .. "/var/lib/dpkg/updates && touch " ..
                      scratch .. "/var/lib/dpkg/status && " .. dpkg .. "-i " .. deb)
    t:eq(code, 0, out)
    t:match(st.sh("dpkg --root=" .. scratch .. " -s provium"), "Status: install ok installed")
    check_installed(t, scratch .. "/usr/bin/provium", scratch .. "/usr")
    out, code = st.sh(dpkg .. "-r provium")
    t:eq(code, 0, out)
    t:ok(not st.read(scratch .. "/usr/bin/provium"), "dpkg -r removed it")
    t:ok(not st.read(scratch .. "/usr/share/provium/types/provium.lua"), "and its data")
end)
