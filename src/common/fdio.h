/* fdio.h: small fd helpers shared by host and agent. */
#pragma once

#include <stddef.h>

/* Writes all n bytes, retrying on EINTR and short writes, and waiting (poll) when a
 * non-blocking fd is full. Returns 0 or -errno. */
int fd_write_all(int fd, const void *p, size_t n);
/* The same for two buffers, in one writev when the fd takes them at once. */
int fd_write2_all(int fd, const void *a, size_t na, const void *b, size_t nb);
