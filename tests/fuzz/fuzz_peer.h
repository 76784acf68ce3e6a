/* fuzz_peer.h: the other end of a Unix socket that a fuzz target's client (QMP, the agent
 * client) connects to, and the libuv loop the client runs on: what QEMU or a guest's agent
 * would be, writing the fuzzer's bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Listens on /tmp/provium-fuzz-NAME-XXXXXX/NAME.sock (removed at exit). Aborts on failure. */
void fuzz_peer_init(const char *name);
const char *fuzz_peer_path(void);
uv_loop_t *fuzz_peer_loop(void);

/* Runs the loop rounds times without blocking. */
void fuzz_spin(int rounds);
/* The client's connection, once it has connected (the loop runs meanwhile). */
int fuzz_peer_accept(void);
/* Writes len bytes to fd in writes of at most chunk, running the loop between them, and after
 * each calls after(fd, arg) when given (to read what the client wrote). Stops early when the
 * client hung up. */
void fuzz_feed(int fd, const uint8_t *data, size_t len, size_t chunk,
               void (*after)(int fd, void *arg), void *arg);
/* Whether the loop let go of every handle within a few rounds. */
int fuzz_loop_idle(void);
