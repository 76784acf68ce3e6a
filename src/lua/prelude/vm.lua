-- vm.lua: the VM's public methods (boot, run, files, lifecycle, console) over its C primitives.
-- Errors point at the caller's line.
local P = ...
local internal, VM, Stream = P.internal, P.VM, P.Stream
local show, raise, call, vm_state, Result = P.show, P.raise, P.call, P.vm_state, P.Result

function VM:boot(opts)
    P.check_boot_options("vm " .. self:name() .. ": boot", opts)
    local ram = vm_state(self).ram
    if ram then -- a fixture's builder: its RAM goes straight into the cache entry
        local o = {}
        for k, v in pairs(opts or {}) do o[k] = v end
        o._ram = ram
        opts = o
    end
    call("boot", self._boot, self, vm_state(self).image, opts)
    P.seed_hwrng(self, opts and opts.rng_seed)
    if internal.configure_links then internal.configure_links(self) end
    return self
end

function VM:run(cmd, opts)
    return setmetatable(call("run", self._exec, self, cmd, opts), Result)
end

-- vm:read_file(path, opts?) -> the contents; with opts.to = host_path, writes them there
-- instead and returns the byte count.
function VM:read_file(path, opts) return call("read_file", self._read_file, self, path, opts) end

-- vm:write_file(path, data, opts?) or vm:write_file(path, {from = host_path, ...}): creates or
-- truncates path with mode opts.mode (default 0644, exact); returns the bytes written.
function VM:write_file(path, data, opts)
    if type(opts) == "number" then opts = { mode = opts } end
    if type(data) == "table" and opts == nil then data, opts = nil, data end
    return call("write_file", self._write_file, self, path, data, opts)
end

function VM:stat(path, opts) return call("stat", self._stat, self, path, opts) end

function VM:mkdir(path, opts)
    if opts == true then opts = { parents = true } end
    call("mkdir", self._mkdir, self, path, opts)
end

---------------------------------------------------------------------------------------------
-- lifecycle and console

function VM:pause() call("pause", self._pause, self) end
function VM:resume() call("resume", self._resume, self) end
function VM:reset() call("reset", self._reset, self) end

-- vm:wait_exit(timeout?): waits until QEMU has exited; raises if it is still running then.
function VM:wait_exit(timeout)
    if timeout ~= nil and not P.is_seconds(timeout) then
        raise("bad argument #1 to 'wait_exit' (seconds from 0 to 1e6 expected, got " .. show(timeout) .. ")")
    end
    local ok, err = pcall(self._wait_exit, self, timeout)
    if not ok then raise((tostring(err):gsub(P.PRELUDE_WHERE, ""))) end
    if self:state() ~= "exited" then
        raise(string.format("vm %s: still running after %s s", self:name(), tostring(timeout)))
    end
end

-- vm:kill(): power loss: QEMU is killed, and the call returns once it has exited, so that what
-- follows (a disk's lost writes, a restore) sees it gone.
local vm_kill = VM.kill
function VM:kill()
    vm_kill(self)
    local st = self:state()
    if st ~= "exited" and st ~= "defined" then
        local ok, err = pcall(self._wait_exit, self, 10)
        if not ok then raise((tostring(err):gsub(P.PRELUDE_WHERE, ""))) end
    end
end

-- vm:power_button(): the ACPI power button; the guest shuts down cleanly (wait_exit to wait).
function VM:power_button() call("power_button", self._power_button, self) end

-- vm:shutdown(opts?): a clean poweroff through the agent, and waits for QEMU to exit.
function VM:shutdown(opts)
    call("shutdown", self._poweroff, self, opts)
    self:wait_exit(opts and opts.timeout or 60)
end

-- A console stream's VM (the stream is C's; only a console can be written to).
local console_of = setmetatable({}, { __mode = "k" })
local vm_console = VM.console
function VM:console()
    local ok, s = pcall(vm_console, self)
    if not ok then raise((tostring(s):gsub(P.PRELUDE_WHERE, ""))) end
    console_of[s] = self
    return s
end

-- console:write(input): types into the serial console.
function Stream:write(data)
    local vm = console_of[self]
    if not vm then raise("stream: write is only for a VM's console") end
    call("write", vm._console_write, vm, data)
end
