-- file.lua: vm:open and File handles (POSIX semantics, errors carry the errno name), vm:tail.
local P = ...
local VM, File, call = P.VM, P.File, P.call

-- vm:open(path, mode?, opts?): mode as fopen ("r", "r+", "w", "w+", "a", "a+", "wx", "w+x");
-- opts.perm sets the permission bits of a created file (default 0644).
function VM:open(path, mode, opts) return call("open", self._open, self, path, mode, opts) end

-- vm:tail(path): a stream of what is appended to path from now on.
function VM:tail(path) return call("tail", self._tail, self, path) end

function File:read(n, opts) return call("read", self._read, self, n, opts) end
function File:write(data, opts) return call("write", self._write, self, data, opts) end
function File:seek(whence, offset, opts) return call("seek", self._seek, self, whence, offset, opts) end
function File:tell() return call("tell", self._seek, self, "cur", 0) end
function File:close() call("close", self._close, self) end
function File:tail() return call("tail", self._tail, self) end
