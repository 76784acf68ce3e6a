-- hello: the default image with a file of this project's and its own host name. Built the
-- first time a test asks for it (provium:vm(name, "hello")), then taken from the cache.
-- Debian packages come with packages { "curl" }; `provium help images` has the rest.
write("/etc/motd", "hello from a Provium recipe\n")
hostname "hello"
