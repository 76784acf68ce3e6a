#!/usr/bin/env bash
# raw-boot-floor.sh: the boot floor for a kernel + initrd: wall time from QEMU's start to
# the moment the guest's /init runs, under Provium's own QEMU command line.
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
# median, min and max in ms. QEMU's command line is Provium's: the argv of the vm.spawn event
# of one boot of bench/boot.lua by $BUILD/provium (BUILD defaults to build/), minus its QMP
# socket and agent ports, plus one virtio-serial port (bench/floor.py), with KERNEL and INITRD
# for the image's. Defaults: 7 runs; APPEND from the cmdline file beside the first kernel,
# else Provium's.
set -euo pipefail

runs=7
append=
extra=
while getopts 'n:a:q:h' o; do
        case $o in
        n) runs=$OPTARG ;;
        a) append=$OPTARG ;;
        q) extra=$OPTARG ;;
        *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
        esac
done
shift $((OPTIND - 1))
if [[ $# -lt 2 || $(($# % 2)) -ne 0 ]]; then
        sed -n '4p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
fi
if [[ -z $append && -f $(dirname "$1")/cmdline ]]; then
        append=$(cat "$(dirname "$1")/cmdline")
fi
here=$(cd "$(dirname "$0")" && pwd)
provium=$(realpath "${BUILD:-$here/../build}/provium")
[[ -x $provium ]] || { echo "raw-boot-floor: $provium not built: run 'make build'" >&2; exit 2; }

shm=/tmp
[[ -w /dev/shm ]] && shm=/dev/shm # guest RAM is a file there, as Provium's
tmp=$(mktemp -d "$shm/provium-floor.XXXXXX")
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

python3 - "$here" "$tmp/mark" "$tmp/overlay.cpio" <<'EOF'
import stat, sys
sys.path.insert(0, sys.argv[1])
from floor import newc
with open(sys.argv[2], "rb") as f:
    mark = f.read()
with open(sys.argv[3], "wb") as f:
    f.write(newc.overlay([("init", stat.S_IFREG | 0o755, mark)]))
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

python3 - "$here" "$provium" "$runs" "$append" "$tmp" "$extra" "${pairs[@]}" <<'EOF'
import os, shlex, statistics, sys
sys.path.insert(0, sys.argv[1])
import floor
provium, runs, append, tmp, extra = sys.argv[2:7]
pairs = [sys.argv[i:i + 3] for i in range(7, len(sys.argv), 3)]
spawn = floor.provium_argv(provium, tmp)
def boot(kernel, initrd):
    argv = floor.floor_argv(spawn, initrd, tmp, ["provium.0"], kernel, append or None)
    g = floor.Guest(argv + shlex.split(extra))
    try:
        g.wait_for(b"PROVIUM-INIT-MARK", 60)
        return (g.t_mark - g.t0) * 1000
    except RuntimeError as e:
        sys.exit("%s + %s: %s" % (kernel, initrd, e))
    finally:
        g.stop()
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
