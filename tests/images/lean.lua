-- lean: the default image on the lean kernel (Linux from Debian's linux-source-6.1, everything a
-- test guest uses built in, no modules), plus e2fsprogs for a disk of its own.
kernel "lean"
packages { "e2fsprogs" }
