-- kv: the default image plus Debian's Redis server and its client, with their dependencies.
-- Built the first time a test asks for it (provium:vm(name, "kv")), then taken from the cache.
packages { "redis-server", "usr-is-merged" } -- the second keeps perl out (docs/images.md)
hostname "kv"
