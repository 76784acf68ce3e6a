---@meta provium
-- types/provium.lua: LuaLS annotations of Provium's Lua API (docs/api.md says what each call
-- does). tests/types.test.lua holds it to the API: every public method has an annotation here
-- and every annotation a method (provium check --api lists them). An editor with LuaLS finds
-- it through .luarc.json's workspace.library.

---@class Bridge
local Bridge = {}

---@param ... any
function Bridge:add_latency(...) end

--- bridge:attach(vm or {vm, ...}): a virtio-net card for each on a TAP port of the bridge, its
--- address (10.77.<n>.<10+k> in attach order) configured in the guest, and every VM on the
--- bridge able to resolve every other as <vm>.<bridge>. Works before and after boot.
---@param vms VM|VM[]
function Bridge:attach(vms) end

---@param ... any
function Bridge:bandwidth_limit(...) end

--- bridge:capture(filter?, opts?): packets crossing the bridge (BPF filter, tcpdump syntax) into
--- a pcap file, and a stream of them. opts.path keeps the file; by default it is in the file's
--- run directory and goes with it.
---@param filter any
---@param opts table?
---@return Capture
function Bridge:capture(filter, opts) end

---@param ... any
function Bridge:drop_rate(...) end

--- bridge:heal(): every impairment of the bridge and its links goes (rules, latency, caps).
function Bridge:heal() end

---@param ... any
function Bridge:ifname(...) end

--- bridge:isolate(vm): nothing in or out of vm's port.
---@param vm VM
function Bridge:isolate(vm) end

---@param vm VM
function Bridge:link(vm) end

---@param ... any
function Bridge:name(...) end

--- bridge:partition(a, b, opts?): no frames between the VMs of side a and those of side b;
--- opts.oneway: only from a to b.
---@param a any
---@param b any
---@param opts table?
function Bridge:partition(a, b, opts) end

--- bridge:grudge(grudge | preset, opts?): frames to each VM from the VMs it holds a grudge
--- against are dropped. grudge: {[vm] = {vm, ...}}; preset: "random-halves", "random-node",
--- "minority-third", "majorities-ring", "bridge" or "primaries" (opts.primaries: a list of
--- VMs or a function returning one; a seeded non-empty subset of them, each alone) over
--- opts.vms (default: every VM on the bridge), drawn from the run's seed. The impairment it
--- returns has .grudge and .text.
---@param spec table|string
---@param opts table?
---@return Impairment
function Bridge:grudge(spec, opts) end

--- bridge:netem{delay_ms, jitter_ms, loss, duplicate, corrupt, reorder, and each's
--- _correlation, direction}: what every VM sends on the bridge is delayed, lost, duplicated,
--- corrupted or reordered (netem in the guest, its egress); direction = "in": what each
--- receives instead (an IFB device in the guest), "both": both; fractions 0..1; reorder needs
--- delay_ms.
---@param opts NetemOptions
---@return Impairment
function Bridge:netem(opts) end

--- bridge:remove(): deletes the bridge now (its ports and uplink too); it is also gone when the
--- file ends.
function Bridge:remove() end

---@return Uplink
function Bridge:uplink() end

---@class Buffer
local Buffer = {}

---@param ... any
function Buffer:bytes(...) end

---@param ... any
function Buffer:len(...) end

---@param ... any
function Buffer:set(...) end

---@param ... any
function Buffer:string(...) end

---@param ... any
function Buffer:uint(...) end

---@class Capture
local Capture = {}

---@param ... any
function Capture:close(...) end

---@param ... any
function Capture:count(...) end

---@param ... any
function Capture:drain(...) end

---@param ... any
function Capture:eof(...) end

---@param ... any
function Capture:expect(...) end

---@param ... any
function Capture:name(...) end

---@param ... any
function Capture:next(...) end

---@param ... any
function Capture:path(...) end

---@param ... any
function Capture:read_until(...) end

---@class Clock
local Clock = {}

--- clock:advance(seconds): moves the guest's wall clock forward (or back, if negative)
---@param seconds number
function Clock:advance(seconds) end

--- clock:now() -> the guest's wall-clock time, seconds since the epoch (with fractions)
function Clock:now() end

--- clock:set(time): sets the guest's wall clock (seconds since the epoch)
---@param time any
function Clock:set(time) end

--- clock:sleep(seconds): waits that long in guest time (the guest's CLOCK_MONOTONIC)
---@param seconds number
function Clock:sleep(seconds) end

--- clock:skew(ppm): the clock runs fast (ppm > 0) or slow by ppm parts per million, through
--- the guest kernel's tick and frequency (adjtimex); 0 puts it back. At most 10% either way.
---@param ppm number
---@return Clock
function Clock:skew(ppm) end

---@class Disk
local Disk = {}

---@param ... any
function Disk:eio_read(...) end

---@param ... any
function Disk:eio_write(...) end

---@param vm VM
function Disk:guest_path(vm) end

--- disk:heal(): every fault undone
function Disk:heal() end

--- disk:last_power_loss() -> {dropped = n, kept = n}: the writes of the last power loss
function Disk:last_power_loss() end

---@param ... any
function Disk:name(...) end

--- disk:power_loss_mode(on, {drop = 1 | p}): while on, a VM that dies without closing the disk
--- (vm:kill(), a crash) loses the writes it had not flushed: all (drop = 1), or each with
--- probability p, drawn from the disk's rng_seed. Off flushes what waits.
---@param on any
---@param opts table?
function Disk:power_loss_mode(on, opts) end

--- disk:read_sectors(lba, count) -> count * 512 bytes: every write the guest's QEMU has sent
--- (flushed or not); not what the guest still holds in its page cache.
---@param lba any
---@param count any
function Disk:read_sectors(lba, count) end

function Disk:sector_size() end

---@param ... any
function Disk:size(...) end

--- disk:slow{ms =, jitter_ms = 0, ops = "read" | "write" | "all", lba =, count =} -> handle
---@param opts table?
function Disk:slow(opts) end

--- disk:write_sectors(lba, data): #data a multiple of 512, durable at once. A guest that has
--- those sectors in its page cache keeps reading its copy until it drops it.
---@param lba any
---@param data string|table
function Disk:write_sectors(lba, data) end

---@class Fault
local Fault = {}

function Fault:hits() end

function Fault:undo() end

---@class File
local File = {}

function File:close() end

---@param n integer
---@param opts table?
function File:read(n, opts) end

---@param whence any
---@param offset any
---@param opts table?
function File:seek(whence, offset, opts) end

function File:tail() end

function File:tell() end

---@param data string|table
---@param opts table?
function File:write(data, opts) end

---@class History
---@field name string
local History = {}

--- h:assert_linearizable{model = "register" | "cas-register" | "kv", initial = v}: fails the
--- test with check's message unless some order of the operations explains every result.
---@param opts table?
---@return table
function History:assert_linearizable(opts) end

--- h:call(process, f, value, fn): invoke, then fn(value) returns "ok" (and the value), "fail" or
--- "info"; an error fn raises makes the operation info. Returns the completion's type and value.
---@param process integer|string
---@param f string
---@param value any
---@param fn function
---@return string, any
function History:call(process, f, value, fn) end

--- h:check{model, initial} -> {ok, model, operations, message, window}: Wing and Gong's search
--- with Lowe's cache; "kv" values are {key, value}, each key a register of its own.
---@param opts table?
---@return table
function History:check(opts) end

--- h:edn(): the records as Jepsen's history.edn (one map a line: what Knossos and Elle read).
---@return string
function History:edn() end

--- h:events(): the records, in order (read-only).
---@return table[]
function History:events() end

--- h:invoke(process, f, value?) -> op: an operation starts; complete it with op:ok, op:fail or
--- op:info.
---@param process integer|string
---@param f string
---@param value any
---@return HistoryOp
function History:invoke(process, f, value) end

--- h:json(): the records as a JSON array of objects.
---@return string
function History:json() end

---@param path string
---@return History
function History:write_edn(path) end

---@param path string
---@return History
function History:write_json(path) end

---@class HistoryOp
local HistoryOp = {}

--- op:fail(value?): the operation did not happen.
---@param value any
---@return HistoryOp
function HistoryOp:fail(value) end

--- op:info(value?): it may have happened (a timeout, a lost connection).
---@param value any
---@return HistoryOp
function HistoryOp:info(value) end

--- op:ok(value?): it happened; a read's value is what it read.
---@param value any
---@return HistoryOp
function HistoryOp:ok(value) end

---@class Impairment
local Impairment = {}

--- An impairment is undone by its own function (netem in the guest, a bandwidth limit) or, for
--- the nftables ones, by its rule's id on the bridge.
function Impairment:undo() end

---@class Lab
local Lab = {}

--- lab:bridge(name): a bridge saved with the lab; its VMs come back attached to it.
---@param name string
function Lab:bridge(name) end

---@param name string
---@param image string?
function Lab:vm(name, image) end

---@class Link
local Link = {}

---@param ... any
function Link:add_latency(...) end

---@param ... any
function Link:bandwidth_limit(...) end

---@param ... any
function Link:drop_rate(...) end

function Link:isolate() end

--- link:netem{...}: as bridge:netem, on what this VM sends (direction = "out", the default:
--- what it receives is left alone), receives ("in") or both ("both").
---@param opts NetemOptions
---@return Impairment
function Link:netem(opts) end

---@class Nemesis
---@field name string
local Nemesis = {}

--- nemesis:quiet(seconds): heals every fault now and starts none for that long (returns at
--- once): the workload can show it recovers.
---@param seconds number
---@return Nemesis
function Nemesis:quiet(seconds) end

--- nemesis:schedule(): what it did so far: {at, action ("apply" | "heal"), fault, targets}.
---@return table[]
function Nemesis:schedule() end

--- nemesis:stop(): no more faults; returns once every fault is healed.
---@return Nemesis
function Nemesis:stop() end

---@class Process
local Process = {}

function Process:close_stdin() end

function Process:kill() end

function Process:pid() end

function Process:running() end

---@param sig string|integer
---@param opts table?
function Process:signal(sig, opts) end

---@param ... any
function Process:stderr(...) end

---@param ... any
function Process:stdout(...) end

--- process:wait(timeout?) -> a Result (what stdout/stderr still hold unread, the exit status);
--- raises if it does not exit in time (the process keeps running).
---@param timeout number?
function Process:wait(timeout) end

---@param data string|table
function Process:write(data) end

---@class Result
---@field code integer? the exit code (nil when a signal ended it)
---@field signal integer? the signal that ended it, or nil
---@field stdout string
---@field stderr string
---@field duration number seconds, from the guest's fork to the exit
---@field timed_out boolean
local Result = {}

---@param msg string?
function Result:assert_fail(msg) end

---@param msg string?
---@return Result
function Result:assert_ok(msg) end

function Result:ok() end

---@class Stream
local Stream = {}

---@param ... any
function Stream:close(...) end

--- stream:drain() -> everything buffered now, without waiting.
function Stream:drain() end

--- stream:eof() -> true once the stream has ended and every byte was read.
function Stream:eof() end

---@param ... any
function Stream:expect(...) end

---@param ... any
function Stream:name(...) end

---@param ... any
function Stream:next(...) end

---@param ... any
function Stream:read_until(...) end

--- console:write(input): types into the serial console.
---@param data string|table
function Stream:write(data) end

---@class T
---@field name string the test's name
local T = {}

---@param haystack string
---@param needle string
---@param msg string?
function T:contains(haystack, needle, msg) end

---@param actual any
---@param expected any
---@param msg string?
function T:eq(actual, expected, msg) end

--- t:error(fn, pattern?) expects fn to raise; returns the error message.
---@param fn function
---@param pattern string?
---@param msg string?
function T:error(fn, pattern, msg) end

---@param msg string?
function T:fail(msg) end

--- t:artifact(path): a host file kept with the test's artifacts if it fails (--artifacts);
--- read when the test ends. Returns path.
---@param path string
---@return string
function T:artifact(path) end

---@param s string
---@param pattern string?
---@param msg string?
function T:match(s, pattern, msg) end

---@param actual any
---@param unexpected any
---@param msg string?
function T:ne(actual, unexpected, msg) end

--- t:needs_kernel(vm, what): what the test checks next is the guest kernel's own (its memory
--- size, its modules): on a local VM the test is skipped, saying so.
---@param vm VM
---@param what string
function T:needs_kernel(vm, what) end

---@param v any
---@param msg string?
function T:ok(v, msg) end

---@param reason string?
function T:skip(reason) end

---@class Uplink
local Uplink = {}

---@param ... any
function Uplink:gateway(...) end

---@param ... any
function Uplink:host_ifname(...) end

---@param ... any
function Uplink:host_ip(...) end

---@param ... any
function Uplink:host_netns(...) end

--- uplink:remove(): deletes the veth pair and its NAT rule now (the guests' routes stay).
function Uplink:remove() end

---@param ... any
function Uplink:runner_ifname(...) end

---@param ... any
function Uplink:runner_ip(...) end

---@class BootOptions
---@field memory integer|string? MiB, or "512M", "1G" (default 256)
---@field cpus integer? default 1
---@field timeout number? seconds (default --boot-timeout, 120)
---@field append string? more kernel command line
---@field kernel string? a kernel of your own instead of the image's
---@field initrd string? an initrd of your own
---@field workers integer? worker ports beside the main one
---@field initial_time string? the guest's RTC at power-on, "YYYY-MM-DDTHH:MM:SS" UTC
---@field rng_seed integer? reproducible guest randomness
---@field hotplug boolean? false: no card or disk after boot, and a faster boot

---@class RunOptions
---@field env table<string, string>?
---@field cwd string?
---@field stdin string?
---@field timeout number? seconds

---@class NetemOptions
---@field delay_ms number? milliseconds each frame waits
---@field jitter_ms number? +/- that much, uniform
---@field loss number? fraction 0..1
---@field loss_correlation number? 0..1: losses in bursts (the Gilbert model)
---@field duplicate number? fraction 0..1
---@field duplicate_correlation number?
---@field corrupt number? fraction 0..1 (the receiver drops it)
---@field corrupt_correlation number?
---@field reorder number? fraction 0..1 sent at once, the rest waits delay_ms (needs it)
---@field reorder_correlation number?
---@field direction "out"|"in"|"both"? what the VM sends (default), receives, or both

---@class VM
local VM = {}

--- vm:attach_disk(disk, {plain = true}?): before boot on its command line; after boot
--- hot-plugged, and this returns once the guest sees the device. plain: QEMU opens the disk's
--- file itself, without the NBD server (no faults, no power loss, no base image): the floor
--- the disk bench compares with.
---@param disk Disk
---@param opts table?
function VM:attach_disk(disk, opts) end

--- vm:boot(opts?): boots and waits until the agent answers (docs/api.md).
---@param opts BootOptions?
---@return VM
function VM:boot(opts) end

---@param ... any
function VM:boot_log(...) end

---@return Clock
function VM:clock() end

function VM:console() end

---@param ... any
function VM:console_tail(...) end

--- vm:detach_disk(disk): unplugged (the guest lets it go first) or taken off the command line
---@param disk Disk
function VM:detach_disk(disk) end

--- vm:disk(name) -> the disk of that name attached to the VM (a fixture clone's own, say)
---@param name string
function VM:disk(name) end

--- vm:ioctl(path | file, request, arg) -> ret, errno name, errno number; arg as for syscall.
---@param target any
---@param request any
---@param arg any
function VM:ioctl(target, request, arg) end

---@param bridge any
function VM:ip(bridge) end

function VM:kill() end

---@param path string
---@param opts table?
function VM:mkdir(path, opts) end

---@param ... any
---@return string
function VM:name(...) end

--- vm:open(path, mode?, opts?): mode as fopen ("r", "r+", "w", "w+", "a", "a+", "wx", "w+x");
--- opts.perm sets the permission bits of a created file (default 0644).
---@param path string
---@param mode integer?
---@param opts table?
---@return File
function VM:open(path, mode, opts) end

function VM:pause() end

--- vm:power_button(): the ACPI power button; the guest shuts down cleanly (wait_exit to wait).
function VM:power_button() end

--- vm:read_file(path, opts?) -> the contents; with opts.to = host_path, writes them there
--- instead and returns the byte count.
---@param path string
---@param opts table?
---@return string|integer
function VM:read_file(path, opts) end

--- vm:reset(): refused, saying why (QEMU runs with -no-reboot; a second boot of one VM is not
--- built): vm:kill() and a new VM, or vm:snapshot() and vm:restore().
function VM:reset() end

---@param snap any
function VM:restore(snap) end

function VM:resume() end

--- vm:run(cmd, opts?): a shell command (a string) or an argv (a list), to its exit.
---@param cmd string|string[]
---@param opts RunOptions?
---@return Result
function VM:run(cmd, opts) end

---@param cmd string|string[]
---@param opts table?
---@return Process
function VM:run_async(cmd, opts) end

--- vm:shutdown(opts?): a clean poweroff through the agent, and waits for QEMU to exit.
---@param opts table?
function VM:shutdown(opts) end

---@param name string
---@return Snapshot
function VM:snapshot(name) end

--- vm:spawn_worker() opens another agent connection: a Worker has the guest-operation methods
--- of a VM, and its requests run concurrently with the VM's and other workers'.
---@param opts table?
---@return Worker
function VM:spawn_worker(opts) end

---@param path string
---@param opts table?
function VM:stat(path, opts) end

---@param ... any
---@return string
function VM:state(...) end

--- vm:syscall(name | number, args...) -> ret, errno name (nil on success), errno number.
--- Arguments: integers (registers), strings (passed NUL-terminated, read-only) and
--- provium.buffer values (in and out: updated in place after the call).
---@param nr any
---@param ... any
function VM:syscall(nr, ...) end

--- vm:tail(path): a stream of what is appended to path from now on.
---@param path string
---@return Stream
function VM:tail(path) end

---@param ... any
function VM:vmm(...) end

--- vm:wait_exit(timeout?): waits until QEMU has exited; raises if it is still running then.
---@param timeout number?
function VM:wait_exit(timeout) end

--- vm:wait_for_file(path, timeout?): until path exists in the guest (default 30 s).
---@param path string
---@param timeout number?
function VM:wait_for_file(path, timeout) end

--- vm:wait_for_port(port, timeout?): until something in the guest listens on TCP port.
---@param port integer
---@param timeout number?
function VM:wait_for_port(port, timeout) end

--- vm:write_file(path, data, opts?) or vm:write_file(path, {from = host_path, ...}): creates or
--- truncates path with mode opts.mode (default 0644, exact); returns the bytes written.
---@param path string
---@param data string|table
---@param opts table?
---@return integer
function VM:write_file(path, data, opts) end

---@class Worker
local Worker = {}

---@param ... any
function Worker:index(...) end

---@param ... any
function Worker:ioctl(...) end

---@param ... any
function Worker:mkdir(...) end

---@param ... any
function Worker:open(...) end

---@param ... any
function Worker:read_file(...) end

---@param ... any
function Worker:run(...) end

---@param ... any
function Worker:run_async(...) end

---@param ... any
function Worker:stat(...) end

---@param ... any
function Worker:syscall(...) end

---@param ... any
function Worker:tail(...) end

---@param ... any
function Worker:write_file(...) end

---@class provium
provium = {}

--- provium:bridge(name) -> a new Linux bridge, subnet 10.77.<n>.0/24 (n: bridges made so far).
---@param name string
---@param opts table?
---@return Bridge
function provium:bridge(name, opts) end

--- provium:breakpoint() (or provium.breakpoint()): under provium debug (or --pdb), stops the
--- test here at a Lua prompt that sees its locals, upvalues and VMs; elsewhere it does nothing.
function provium:breakpoint() end

---@param ... any
function provium:buffer(...) end

--- provium.history(name?): a new history of a workload's operations (docs/determinism.md).
---@param name string?
---@return History
function provium:history(name) end

--- provium.keyword(name): an EDN keyword (:append, :r) for history values, such as Elle's
--- transactions; one per name, so == compares them; JSON writes the name.
---@param name string
---@return table
function provium:keyword(name) end

--- provium.random(), provium.random(m), provium.random(m, n): as math.random, from the running
--- test's own stream of the run's seed (--seed): the same draws in every run with that seed.
---@param m integer?
---@param n integer?
---@return number
function provium:random(m, n) end

--- provium.seed(): the running test's seed (the file's at its top level), derived from the
--- run's seed (--seed) and the file's and test's names.
---@return integer
function provium:seed() end

--- provium:capture(ifname, filter?, opts?): the same on any interface of the file's network
--- namespace: lo, a veth pair the test made, a bridge's TAP.
---@param ifname any
---@param filter any
---@param opts table?
function provium:capture(ifname, filter, opts) end

--- provium:claim{memory = "2G", cpus = 4}: what the file needs of the run's resource pool, at
--- its top level before its first test; the dispatcher starts it when that fits.
---@param opts table?
function provium:claim(opts) end

--- provium:disk(name, {size = "64M"} | {from = "path/to/raw.img" | other_disk}, rng_seed = n)
---@param name string
---@param opts table?
---@return Disk
function provium:disk(name, opts) end

--- provium:lab_fixture(name, setup) -> {vm name = VM}: setup(lab) makes and prepares several
--- VMs with lab:vm(name, image):boot(opts); all of them are saved and restored together.
---@param name string
---@param setup function
---@return table<string, VM>
function provium:lab_fixture(name, setup) end

--- provium:nemesis{vms, bridge, faults = {"partition", "pause", "clock", "drop", "latency",
--- "kill", "disk"}, interval = 5, duration = interval / 2, history?, partitions?, process?,
--- disks?, skew_ppm?, drop?, latency_ms?}: a seeded schedule of faults in a task of its own
--- beside the test's workload; every fault applied and healed is a nemesis.fault event.
---@param opts table
---@return Nemesis
function provium:nemesis(opts) end

--- provium:parallel(fn, ...) runs the functions at once, each in its own coroutine, and returns
--- when all have. The first error fails the call with that branch's own message and location;
--- the other branches are stopped (their guest operations cancelled).
---@param ... any
function provium:parallel(...) end

--- provium:vm(name, image?, opts?): opts.vmm ("qemu" or "local") for this VM alone.
---@param name string
---@param image string?
---@param opts table?
---@return VM
function provium:vm(name, image, opts) end

--- provium:vm_fixture(name, setup, opts?) -> a running VM restored from the fixture, which is
--- built first (boot with opts, then setup(vm)) when the cache has no entry for its key.
---@param name string
---@param setup function
---@param opts table?
---@return VM
function provium:vm_fixture(name, setup, opts) end

--- provium:vmm() -> the file's default; provium:vmm(v) sets it for the VMs made after.
---@param v any
function provium:vmm(v) end

---@type provium
provium = provium

--- test(name, fn): declares a test; fn gets the test's context t.
---@param name string
---@param fn fun(t: T)
function test(name, fn) end
