-- process.lua: vm:run_async(cmd, opts) and the Process it returns (wait, write, signal, ...).
local P = ...
local VM, Process, show, raise, call, Result = P.VM, P.Process, P.show, P.raise, P.call, P.Result

function VM:run_async(cmd, opts)
    local p = call("run_async", self._run_async, self, cmd, opts)
    p:_wait_started()
    local st = p:_state()
    if not st.started then raise(st.error) end
    return p
end

function Process:pid() return self:_state().pid end

function Process:running() return not self:_state().done end

-- process:wait(timeout?) -> a Result (what stdout/stderr still hold unread, the exit status);
-- raises if it does not exit in time (the process keeps running).
function Process:wait(timeout)
    if timeout ~= nil and not P.is_seconds(timeout) then
        raise("bad argument #1 to 'wait' (seconds from 0 to 1e6 expected, got " .. show(timeout) .. ")")
    end
    if not self:_wait_exit(timeout) then
        raise(string.format("%s: still running after %s s", tostring(self), tostring(timeout)))
    end
    local st = self:_state()
    if st.error then raise(st.error) end
    local r = { code = st.code, signal = st.signal, timed_out = st.timed_out,
                duration = st.duration, cmd = st.cmd, vm = st.vm,
                stdout = self:stdout():drain(), stderr = self:stderr():drain() }
    return setmetatable(r, Result)
end

function Process:write(data) call("write", self._write, self, data) end
function Process:close_stdin() call("close_stdin", self._close_stdin, self) end
function Process:signal(sig, opts)
    call("signal", self._signal, self, sig, not (opts and opts.group == false))
end
function Process:kill() self:signal("KILL") end
