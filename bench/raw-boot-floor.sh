#!/usr/bin/env bash
# raw-boot-floor.sh: the boot floor for a kernel + initrd: wall time from QEMU's start to
# the moment the guest's /init runs, under the same QEMU setup Provium uses.
#
#   bench/raw-boot-floor.sh [-n RUNS] [-a APPEND] [-q 'QEMU ARGS'] KERNEL INITRD [KERNEL INITRD]...
#
# Each initrd is booted with /init replaced by a tiny static program that writes a marker
# to the console and powers off: the bench appends a cpio holding it (the kernel unpacks
# concatenated archives in order, later entries win; a compressed initrd is decompressed,
# extended and recompressed with the same tool, since lz4's legacy format cannot be followed
# by another archive). So the figure includes the kernel, the initrd's size and compression,
# and nothing of the agent. The host timestamps the marker on QEMU's stdout. Several pairs
# are measured round-robin (fair under noisy neighbours). Prints each run and, per pair, the
# median, min and max in ms. Defaults: 7 runs; APPEND from the cmdline file beside the first
# kernel, else "console=ttyS0 panic=-1 quiet"; QEMU: -machine pc -accel tcg -m 256, one
# virtio-serial port, like a Provium VM.
set -euo pipefail

runs=7
append=
extra=
while getopts 'n:a:q:h' o; do
        case $o in
        n) runs=$OPTARG ;;
        a) append=$OPTARG ;;
        q) extra=$OPTARG ;;
        *) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
        esac
done
shift $((OPTIND - 1))
if [[ $# -lt 2 || $(($# % 2)) -ne 0 ]]; then
        sed -n '4p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
fi
if [[ -z $append ]]; then
        if [[ -f $(dirname "$1")/cmdline ]]; then
                append=$(cat "$(dirname "$1")/cmdline")
        else
                append="console=ttyS0 panic=-1 quiet"
        fi
fi

tmp=$(mktemp -d /tmp/provium-floor.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/mark.c" <<'EOF'
#include <fcntl.h>
#include <sys/reboot.h>
#include <unistd.h>
int main(void)
{
        static const char m[] = "\nPROVIUM-INIT-MARK\n";
        if (write(1, m, sizeof m - 1) < 0) {
                int fd = open("/dev/console", O_WRONLY);
                if (fd >= 0 && write(fd, m, sizeof m - 1) < 0)
                        return 1;
        }
        sync();
        reboot(RB_POWER_OFF);
        return 0;
}
EOF
gcc -O2 -static -o "$tmp/mark" "$tmp/mark.c"

python3 - "$tmp/mark" "$tmp/overlay.cpio" <<'EOF'
import stat, sys
b = open(sys.argv[1], "rb").read()
def hdr(name, mode, size, ino):
    n = name.encode() + b"\0"
    h = b"070701" + b"".join(b"%08X" % v for v in
        (ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(n), 0)) + n
    return h + b"\0" * (-len(h) % 4)
out = hdr("init", stat.S_IFREG | 0o755, len(b), 99990) + b + b"\0" * (-len(b) % 4)
out += hdr("TRAILER!!!", 0, 0, 99991)
out += b"\0" * (-len(out) % 512)
open(sys.argv[2], "wb").write(out)
EOF
pairs=()
i=0
while [[ $# -gt 0 ]]; do
        kernel=$1 initrd=$2
        shift 2
        i=$((i + 1))
        magic=$(od -An -tx1 -N4 "$initrd" | tr -d ' ')
        case $magic in
        30373037) cat "$initrd" "$tmp/overlay.cpio" >"$tmp/initrd$i" ;;
        02214c18) cat <(lz4 -dc "$initrd") "$tmp/overlay.cpio" | lz4 -l -9 -q >"$tmp/initrd$i" ;;
        1f8b*) cat <(gzip -dc "$initrd") "$tmp/overlay.cpio" | gzip -9 -n >"$tmp/initrd$i" ;;
        28b52ffd) cat <(zstd -qdc "$initrd") "$tmp/overlay.cpio" | zstd -q -19 >"$tmp/initrd$i" ;;
        fd377a58) cat <(xz -dc "$initrd") "$tmp/overlay.cpio" | xz -9 --check=crc32 >"$tmp/initrd$i" ;;
        *) echo "raw-boot-floor: $initrd: unknown format (magic $magic)" >&2; exit 1 ;;
        esac
        pairs+=("$kernel" "$tmp/initrd$i" "$initrd")
done

python3 - "$runs" "$append" "$tmp" "$extra" "${pairs[@]}" <<'EOF'
import os, select, shlex, statistics, subprocess, sys, time
runs, append, tmp, extra = sys.argv[1:5]
pairs = [sys.argv[i:i + 3] for i in range(5, len(sys.argv), 3)]
sock = os.path.join(tmp, "a0.sock")
def boot(kernel, initrd):
    cmd = ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", "256", "-nographic",
           "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", append,
           "-device", "virtio-serial-pci",
           "-chardev", "socket,id=a0,path=%s,server=on,wait=off" % sock,
           "-device", "virtserialport,chardev=a0,name=provium.0"] + shlex.split(extra)
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    buf, t, fd = b"", None, p.stdout.fileno()
    while time.monotonic() - t0 < 60:
        if not select.select([fd], [], [], 1)[0]:
            continue
        c = os.read(fd, 65536)
        if not c:
            break
        buf += c
        if t is None and b"PROVIUM-INIT-MARK" in buf:
            t = time.monotonic() - t0
    if p.poll() is None:
        p.kill()
    p.wait()
    if t is None:
        sys.stderr.write(buf[-2000:].decode(errors="replace") + "\n")
        sys.exit("%s + %s: no marker from the guest within 60 s" % (kernel, initrd))
    return t * 1000
times = [[] for _ in pairs]
for r in range(int(runs)):
    for i, (kernel, initrd, orig) in enumerate(pairs):
        times[i].append(boot(kernel, initrd))
        print("run %d: %s + %s: %.0f ms" % (r + 1, kernel, orig, times[i][-1]), flush=True)
for i, (kernel, initrd, orig) in enumerate(pairs):
    t = times[i]
    print("floor: median %.0f ms, min %.0f, max %.0f (n=%d, %s + %s, %d KiB)" % (
        statistics.median(t), min(t), max(t), len(t), kernel, orig,
        os.path.getsize(orig) // 1024))
EOF
