-- etcd: the default image plus Debian's etcd 3.4 server and etcdctl (tests/history_etcd.test.lua
-- runs three of them as one cluster). Packages are unpacked, never configured: the user and
-- directory etcd-server's postinst would make are made here. init-system-helpers (a
-- pre-dependency of etcd-server) depends on "usrmerge | usr-is-merged", and apt's first pick
-- pulls in perl; naming the second steers it, as images/redis.lua does.
packages { "etcd-server", "etcd-client", "usr-is-merged" }

user { name = "etcd", home = "/var/lib/etcd" }
dir("/var/lib/etcd", { owner = "etcd", mode = "0700" })
write("/etc/motd", "Provium's etcd image\n")
