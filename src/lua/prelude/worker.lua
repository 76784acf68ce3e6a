-- worker.lua: vm:spawn_worker(), and the guest-operation methods a Worker shares with its VM.
-- Loaded after every file that defines one of them.
local P = ...
local VM, Worker, call = P.VM, P.Worker, P.call

-- vm:spawn_worker() opens another agent connection: a Worker has the guest-operation methods
-- of a VM, and its requests run concurrently with the VM's and other workers'.
function VM:spawn_worker(opts)
    return call("spawn_worker", self._spawn_worker, self, opts)
end

for _, name in ipairs({ "run", "read_file", "write_file", "stat", "mkdir", "run_async", "open", "tail",
                        "syscall", "ioctl" }) do
    Worker[name] = VM[name]
end
