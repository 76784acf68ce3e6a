-- disks: the default image plus e2fsprogs (mkfs.ext4, filefrag, debugfs), for the disk tests.
packages { "e2fsprogs" }
