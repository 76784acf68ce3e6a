/* agent_harness.h: drives the real provium-agent ($PROVIUM_AGENT) over a socketpair: a client,
 * requests, replies and their checks, and scratch files (agent_harness.c). Shared by the
 * test_agent_*.c suites. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/input.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define MIB            (1024u * 1024u)
#define _cleanup_free_ __attribute__((cleanup(freep)))

static inline void freep(void *p)
{
        free(*(void **) p);
}

/* Scratch files of a suite live below it (group_setup makes it, group_teardown removes it). */
extern char tmp_root[];

typedef struct Client {
        pid_t pid;
        int fd;
        ProtoReader rd;
        ProtoWriter wr;
} Client;

typedef struct Result {
        char *out, *err, *data; /* chunk payloads by stream */
        size_t out_len, err_len, data_len;
        size_t n_chunks, max_chunk;
        size_t n_acks;     /* write_file ack chunks */
        uint64_t last_ack; /* their last n */
        uint64_t pid;      /* spawn's started chunk, 0 before it */
} Result;

void client_start(size_t n, const char *const *extra, Client **ret);
void client_new_n(size_t n, Client **ret);
Client *client_new(void);
int client_finish(Client *c);
void client_free(Client *c);
void send_raw(Client *c, const void *p, size_t n);
void req_begin(Client *c, uint64_t id, const char *op, uint32_t n_extra);
void req_send(Client *c);
int read_frame(Client *c, msgpack_object *ret);
void buf_append(char **buf, size_t *len, const char *p, size_t n);
void result_add_chunk(Result *res, const msgpack_object *m);
void result_done(Result *res);
msgpack_object wait_reply(Client *c, uint64_t id, Result *res);
void assert_ok(const msgpack_object *m);
uint64_t get_u(const msgpack_object *m, const char *key);
int64_t get_i(const msgpack_object *m, const char *key);
bool get_b(const msgpack_object *m, const char *key);
bool is_nil(const msgpack_object *m, const char *key);
void assert_error(const msgpack_object *m, int errnum, const char *name, const char *needle);
void send_expect_error(Client *c, uint64_t id, int errnum, const char *name, const char *needle);
uint64_t next_frame(Client *c, msgpack_object *m);
bool is_chunk(const msgpack_object *m, const char *kind);
int64_t now_ms(void);
void hello_ok(Client *c, uint64_t id);
char *tmp_path(const char *name);
msgpack_object run_cmd(Client *c, uint64_t id, const char *cmd, Result *res);
void write_local(const char *path, const void *p, size_t n);
char *read_local(const char *path, size_t *ret_len);
/* The local file at path holds exactly the n bytes of want. */
void assert_local_file(const char *path, const void *want, size_t n);
/* A new FIFO below tmp_root (caller frees the path). */
char *tmp_fifo(const char *name);
msgpack_object read_file(Client *c, uint64_t id, const char *path, Result *res);
void hello_within(Client *c, uint64_t id, int64_t max_ms);
void cancel_expect(Client *c, uint64_t id, uint64_t target, const char *op);
msgpack_object stat_path(Client *c, uint64_t id, const char *path, bool follow);
msgpack_object mkdir_path(Client *c, uint64_t id, const char *path, int mode, bool parents);
msgpack_object open_req(Client *c, uint64_t id, const char *path, const char *flags);
uint64_t open_handle(Client *c, uint64_t id, const char *path, const char *flags);
msgpack_object fread_req(Client *c, uint64_t id, uint64_t fd, uint64_t n);
uint64_t seek_req(Client *c, uint64_t id, uint64_t fd, const char *whence, int64_t off);
void assert_data(const msgpack_object *m, const char *want);
void hello_ok_any(Client *c, uint64_t id);
void append_local(const char *path, const char *s);
void tail_expect(Client *c, uint64_t id, const char *want);
void spawn_cmd(Client *c, uint64_t id, const char *cmd);
uint64_t wait_started(Client *c, uint64_t id);
void send_proc(Client *c, uint64_t id, const char *op, uint64_t proc);
void expect_hangup(const void *bytes, size_t n, bool shut);
void send_input_event(int fd, uint16_t type, uint16_t code, int32_t value);
int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);
int group_setup(void **state);
int group_teardown(void **state);
