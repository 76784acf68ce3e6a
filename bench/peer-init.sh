#!/bin/sh
# peer-init.sh: /init of the peer guest (bench/peers.py puts it, with dropbear, qemu-ga, their
# shared libraries and an authorized key, into a copy of the default initrd). No agent: it
# loads the image's modules, brings up eth0 on QEMU's user network (10.0.2.15/24, gateway
# 10.0.2.2), starts dropbear (ssh, port 22, a fresh ed25519 host key, public keys only) and
# qemu-ga on the virtio-serial port org.qemu.guest_agent.0, writes /tmp/f4k (4 KiB), and
# prints PEER-READY (or PEER-ERROR <why>) on the console.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
while read -r m; do insmod "/$m"; done </lib/modules/provium.order
# and every device's driver ("virtio:ID name: path..."): the peer has a card
for m in $(sed 's/^[^ ]* [^:]*://' /lib/modules/provium.bydevice); do insmod "/$m"; done
fail() { echo "PEER-ERROR $*"; while :; do sleep 3600; done; }
i=0
while [ ! -e /sys/class/net/eth0 ]; do
	i=$((i + 1)); [ $i -gt 500 ] && fail "no eth0"
	usleep 10000
done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
head -c 4096 /dev/urandom >/tmp/f4k
mkdir -p /etc/dropbear
dropbearkey -t ed25519 -f /etc/dropbear/dropbear_ed25519_host_key >/tmp/dropbearkey.log 2>&1 ||
	fail "dropbearkey: $(tail -n1 /tmp/dropbearkey.log)"
dropbear -F -E -s -r /etc/dropbear/dropbear_ed25519_host_key -p 22 2>/tmp/dropbear.log &
i=0
qga=
while [ -z "$qga" ]; do
	for p in /sys/class/virtio-ports/*; do
		[ -f "$p/name" ] && [ "$(cat "$p/name")" = org.qemu.guest_agent.0 ] && [ -c "/dev/${p##*/}" ] &&
			qga=/dev/${p##*/}
	done
	i=$((i + 1)); [ -z "$qga" ] && [ $i -gt 500 ] && fail "no port org.qemu.guest_agent.0"
	[ -z "$qga" ] && usleep 10000
done
qemu-ga -m virtio-serial -p "$qga" -t /tmp -f /tmp/qemu-ga.pid 2>/tmp/qemu-ga.log &
usleep 200000
kill -0 $! 2>/dev/null || fail "qemu-ga exited: $(tail -n1 /tmp/qemu-ga.log)"
echo "PEER-READY $qga"
while :; do sleep 3600; done
