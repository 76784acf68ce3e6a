-- ready.lua: vm:wait_for_file and vm:wait_for_port, readiness probes for services run_async started.
local P = ...
local VM, show, raise = P.VM, P.show, P.raise

local function wait_in_guest(vm, what, object, test, timeout)
    timeout = timeout or 30
    if type(timeout) ~= "number" or timeout <= 0 then
        raise(string.format("vm %s: %s: timeout must be a positive number of seconds, got %s",
                            vm:name(), what, show(timeout)))
    end
    local script = string.format([[
end=$(( $(date +%%s) + %d ))
until %s; do
  [ $(date +%%s) -ge $end ] && exit 1
  sleep 0.05
done]], math.ceil(timeout), test)
    local r = vm:run(script, { env = { P = tostring(object) }, timeout = timeout + 10 })
    if not r:ok() then
        raise(string.format("vm %s: %s %s: not ready after %g s", vm:name(), what,
                            tostring(object), timeout))
    end
end

-- vm:wait_for_file(path, timeout?): until path exists in the guest (default 30 s).
function VM:wait_for_file(path, timeout)
    if type(path) ~= "string" or path == "" then
        raise("bad argument #1 to 'wait_for_file' (path expected, got " .. show(path) .. ")")
    end
    wait_in_guest(self, "wait_for_file", path, '[ -e "$P" ]', timeout)
end

-- vm:wait_for_port(port, timeout?): until something in the guest listens on TCP port.
function VM:wait_for_port(port, timeout)
    if math.type(port) ~= "integer" or port < 1 or port > 65535 then
        raise("bad argument #1 to 'wait_for_port' (TCP port 1-65535 expected, got " .. show(port) .. ")")
    end
    local hex = string.format("%04X", port)
    wait_in_guest(self, "wait_for_port", port,
                  "grep -q ':" .. hex .. " [0-9A-F:]* 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null",
                  timeout)
end
