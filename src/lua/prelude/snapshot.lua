-- snapshot.lua: vm:snapshot(name?) and vm:restore(snap), over the VM's C primitives.
local P = ...
local VM, show, raise, call = P.VM, P.show, P.raise, P.call

-- vm:snapshot(name?) saves the VM (device state, and RAM as a sparse copy); vm:restore(snap)
-- puts the VM back to it: a new QEMU loads the state with the RAM mapped copy-on-write.
local Snapshot = {}
P.api.Snapshot = Snapshot
Snapshot.__index = Snapshot
Snapshot.__tostring = function(s) return "Snapshot(" .. s.vm_name .. ", " .. s.name .. ")" end

function VM:snapshot(name)
    if name ~= nil and type(name) ~= "string" then
        raise("bad argument #1 to 'snapshot' (snapshot name expected, got " .. type(name) .. ")")
    end
    local id = call("snapshot", self._snapshot, self)
    return setmetatable({ vm = self, vm_name = self:name(), id = id,
                          name = name or ("snapshot " .. id) }, Snapshot)
end

function VM:restore(snap)
    if getmetatable(snap) ~= Snapshot then
        raise("bad argument #1 to 'restore' (Snapshot from vm:snapshot() expected, got " ..
              show(snap) .. ")")
    end
    if snap.vm ~= self then
        raise(string.format("vm %s: restore: snapshot '%s' was taken of vm %s, not of vm %s",
                            self:name(), snap.name, snap.vm_name, self:name()))
    end
    call("restore", self._restore, self, snap.id, snap.name)
end
