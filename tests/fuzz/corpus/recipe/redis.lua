-- redis: the default image plus Debian's Redis server and client (redis-tools comes with the
-- server as a dependency). Packages are unpacked, never configured: their maintainer scripts
-- do not run, so the user and directory the server's postinst would make are made here.
-- apt satisfies "usrmerge | usr-is-merged" (init-system-helpers) with the first, which pulls
-- in perl (52 MiB of the 105); naming the second steers it.
packages { "redis-server", "usr-is-merged" }

user { name = "redis", home = "/var/lib/redis" }
dir("/var/lib/redis", { owner = "redis", mode = "0750" })
copy("/etc/redis/provium.conf", "redis/provium.conf", { mode = "0644" })
write("/etc/motd", "Provium's redis image\n")
