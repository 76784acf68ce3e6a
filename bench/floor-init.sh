#!/bin/sh
# floor-init.sh: /init of the round-trip floor guest (bench/bench.py puts it, with
# guest-floor as /bench-floor, into a copy of the default initrd). No agent: it loads the
# same modules as the agent, times fork+exec of /bin/true, then serves the two
# virtio-serial ports (FLOOR-CLOCK: the guest clock before and after the modules, and once
# both ports are there; FLOOR-INSMOD: ns per module, busybox insmod's fork+exec included): "bench.echo" with a plain busybox cat loop, "bench.c" with the bare
# C responder (guest-floor serve).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
t0=$(/bench-floor clock)
per=
while read -r m; do
	a=$(/bench-floor clock)
	insmod "/$m"
	b=$(/bench-floor clock)
	n=${m##*/}
	per="$per ${n%.ko}:$((b - a))"
done </lib/modules/provium.order
t1=$(/bench-floor clock)
port() {
	i=0
	while [ $i -lt 500 ]; do
		for p in /sys/class/virtio-ports/*; do
			[ -f "$p/name" ] && [ "$(cat "$p/name")" = "$1" ] && [ -c "/dev/${p##*/}" ] &&
				{ echo "/dev/${p##*/}"; return 0; }
		done
		usleep 10000
		i=$((i + 1))
	done
	return 1
}
echo=$(port bench.echo) || { echo "FLOOR-ERROR no port bench.echo"; poweroff -f; }
cport=$(port bench.c) || { echo "FLOOR-ERROR no port bench.c"; poweroff -f; }
t2=$(/bench-floor clock)
echo "FLOOR-CLOCK $t0 $t1 $t2"
echo "FLOOR-INSMOD$per"
head -c 4096 /dev/urandom >/tmp/f4k
# fork+exec floor: what vm:run does at the least (the agent runs /bin/sh -c CMD)
/bench-floor forkexec 200 /bin/true
/bench-floor forkexec 100 /bin/sh -c true
/bench-floor serve "$cport" &
exec 3<>"$echo"
echo "FLOOR-ECHO-READY $echo"
while :; do cat <&3 >&3; usleep 10000; done
