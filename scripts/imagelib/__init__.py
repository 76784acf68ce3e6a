"""imagelib: the code both image builders share (scripts/build-default-image for the default
image, scripts/build-recipe-image for recipes).

  common   failures, progress lines, the cache directory, apt's stamp, manifests, atomic writes
  debs     .deb download with `apt-get download`, verified against apt's SHA256
  kernel   the kernel package: which one (apt), unpacked once per version, its vmlinux
  modules  the kernel's module index and the dependency closure of a list of modules
  newc     the deterministic newc (cpio) reader and writer
  pack     a recipe's tree over its base: one initramfs, or a read-only ext4 root disk

image.c hashes every *.py here into both kinds of cache key, so an edit rebuilds the images
it could change.
"""
