/* nbd_server.h: one NBD export on a Unix socket, served on the file runner's loop
 * (nbd_server.c). It speaks the protocol (nbd_wire.h) and checks every request against the
 * export's size; what a request does is its owner's (disk.c): each well-formed request is
 * handed over, and answered with nbd_request_done, at once or later (a slow fault). One client
 * at a time: QEMU's, for the VM the disk is attached to. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct NbdServer NbdServer;
typedef struct NbdConn NbdConn;

typedef struct NbdRequest {
        uint16_t type;  /* NBD_CMD_READ, _WRITE, _FLUSH, _TRIM, _WRITE_ZEROES */
        uint16_t flags; /* NBD_CMD_FLAG_FUA */
        uint64_t offset;
        uint32_t length;
        uint8_t *data; /* a write's bytes; a read's destination (length bytes) */
        bool direct;   /* a write whose bytes went straight where write_target said */
        /* the server's */
        uint64_t handle;
        NbdConn *conn; /* kept until every request of it is answered (dropped if it is gone) */
        uint8_t *buf;  /* reply header, then data */
} NbdRequest;

typedef struct NbdServerOps {
        /* A request to carry out; answer it with nbd_request_done. */
        void (*request)(void *data, NbdRequest *req);
        /* Where a write of length bytes at offset may be read into straight from the socket
         * (the export's own memory), or NULL for a buffer of the request's. Optional. */
        uint8_t *(*write_target)(void *data, uint64_t offset, uint32_t length);
        /* A client connected (up), or went away: clean when it said NBD_CMD_DISC. */
        void (*client)(void *data, bool up, bool clean);
} NbdServerOps;

/* Listens on path (created; must not exist). Returns NULL with err naming the path. */
NbdServer *nbd_server_new(uv_loop_t *loop, const char *path, const char *export_name, uint64_t size,
                          const NbdServerOps *ops, void *data, char *err, size_t errlen);
/* Answers req with error (0, or an errno the protocol carries: EIO, ENOSPC...) and frees it. */
void nbd_request_done(NbdRequest *req, int error);
/* Answers a read that worked with the bytes at from (the export's own memory, which must stay
 * mapped while the server lives) instead of req->data: one copy fewer. Frees req. */
void nbd_request_done_from(NbdRequest *req, const uint8_t *from);
/* Closes the socket and the client (unlinking path); requests not yet answered stay the
 * owner's to answer (their answers are dropped). The server is freed once its handles are. */
void nbd_server_close(NbdServer *s);
/* The client's process is gone (QEMU exited): what it sent is read now, and the connection
 * ends there (not clean unless that said NBD_CMD_DISC), before the loop would see it. */
void nbd_server_client_gone(NbdServer *s);
