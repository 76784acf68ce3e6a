-- lean-disk: the lean kernel with the image packed as a read-only root disk, not an initramfs.
kernel "lean"
packages { "hello" }
pack "disk"
