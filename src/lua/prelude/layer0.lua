-- layer0.lua: vm:syscall and vm:ioctl, straight into the guest kernel.
local P = ...
local VM, call = P.VM, P.call

-- vm:syscall(name | number, args...) -> ret, errno name (nil on success), errno number.
-- Arguments: integers (registers), strings (passed NUL-terminated, read-only) and
-- provium.buffer values (in and out: updated in place after the call).
function VM:syscall(nr, ...) return call("syscall", self._syscall, self, nr, ...) end

-- vm:ioctl(path | file, request, arg) -> ret, errno name, errno number; arg as for syscall.
function VM:ioctl(target, request, arg) return call("ioctl", self._ioctl, self, target, request, arg) end
