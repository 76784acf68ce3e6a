/* fuzz_agent_client.c: libFuzzer target for the host's reply dispatch (src/host/vmm/
 * agent_client.c): what a guest's agent sends back, matched to the requests in flight by id,
 * as chunks or as a request's one reply.
 *
 * Each input drives a real client over a real Unix socket and libuv loop, as a VM does. Its
 * first byte chooses whether the peer answers the client's hello (so that three requests are
 * in flight when the rest arrives: the first with a deadline, so the sweep timer runs) and the
 * size of the writes the rest is cut into (1 to 128 bytes); then the peer hangs up. Request
 * ids are the client's own (from the clock): in each frame of the rest that decodes, an "id"
 * under 16 is taken as relative to the hello's, so that inputs can name the requests in flight
 * (the hello is 0, the three requests 1 to 3); what does not decode goes as it is. Checked
 * beyond the sanitizers: each request ends exactly once, with a status the header documents,
 * and has no chunk after its end; ready runs at most once; the client lets go of every
 * handle. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent_client.h"
#include "fuzz_peer.h"

#define NREQS 3

typedef struct {
        AgentRequest req;
        int ended;
} Req;

typedef struct {
        int ready_calls, ready_status;
        Req reqs[NREQS];
} Seen;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        (void) argc, (void) argv;
        fuzz_peer_init("agent");
        return 0;
}

static void on_ready(AgentClient *c, int status, void *data)
{
        (void) c;
        Seen *s = data;
        s->ready_calls++;
        s->ready_status = status;
}

static bool on_lost(AgentClient *c, int status, void *data)
{
        (void) c, (void) status, (void) data;
        return false;
}

static void on_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                     const msgpack_object *msg)
{
        Req *r = (Req *) req;
        if (r->ended || !kind || (data == NULL && len != 0) || (data == NULL && !msg))
                abort();
}

static void on_reply(AgentRequest *req, int status, const msgpack_object *reply)
{
        Req *r = (Req *) req;
        if (status != 0 && status != -ETIMEDOUT && status != -ECONNRESET && status != -EBADMSG &&
            status != -EMSGSIZE && status != -ENOMEM && status != -ECANCELED)
                abort();
        if ((status == 0) != (reply != NULL))
                abort();
        r->ended++;
}

/* What the client wrote to the peer, dropped; the hello's id when it is among it (else 0). */
static uint64_t drain(int fd, ProtoReader *rd)
{
        uint64_t hello = 0;
        for (;;) {
                uint8_t *p = proto_reader_space(rd, 4096);
                ssize_t n = p ? recv(fd, p, 4096, MSG_DONTWAIT) : -1;
                if (n <= 0)
                        return hello;
                proto_reader_commit(rd, (size_t) n);
                msgpack_object msg;
                const char *op;
                size_t oplen;
                uint64_t id;
                while (proto_reader_next(rd, &msg) > 0)
                        if (proto_get_bytes(&msg, "op", &op, &oplen) == 1 && oplen == 5 &&
                            memcmp(op, "hello", 5) == 0 && proto_get_uint(&msg, "id", &id) == 1)
                                hello = id;
        }
}

static void drain_after(int fd, void *rd)
{
        (void) drain(fd, rd);
}

/* One map again, its "id" moved by base when under 16. */
static void pack_remapped(msgpack_packer *pk, const msgpack_object *map, uint64_t base)
{
        msgpack_pack_map(pk, map->via.map.size);
        for (uint32_t i = 0; i < map->via.map.size; i++) {
                const msgpack_object_kv *kv = &map->via.map.ptr[i];
                msgpack_pack_object(pk, kv->key);
                if (proto_key_is(kv, "id") && kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                    kv->val.via.u64 < 16)
                        msgpack_pack_uint64(pk, base + kv->val.via.u64);
                else
                        msgpack_pack_object(pk, kv->val);
        }
}

/* data as the frames the peer sends: each that decodes with its id remapped, the rest as is. */
static void remap_ids(const uint8_t *data, size_t size, uint64_t base, msgpack_sbuffer *out)
{
        ProtoReader rd;
        if (proto_reader_init(&rd) < 0 || proto_reader_feed(&rd, data, size) < 0)
                abort();
        msgpack_sbuffer body;
        msgpack_packer pk;
        msgpack_sbuffer_init(&body);
        msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
        size_t used = 0;
        msgpack_object msg;
        while (proto_reader_next(&rd, &msg) > 0) {
                size_t len;
                (void) proto_reader_last_body(&rd, &len);
                used += 4 + len;
                msgpack_sbuffer_clear(&body);
                pack_remapped(&pk, &msg, base);
                uint8_t hdr[4];
                proto_put_frame_len(hdr, body.size);
                msgpack_sbuffer_write(out, (const char *) hdr, 4);
                msgpack_sbuffer_write(out, body.data, body.size);
        }
        if (size > used) /* msgpack-c's writer adds an offset to a NULL buffer otherwise */
                msgpack_sbuffer_write(out, (const char *) data + used, size - used);
        msgpack_sbuffer_destroy(&body);
        proto_reader_done(&rd);
}

/* The agent's answer to hello id: ok, this protocol's version, who it is. */
static void answer_hello(int fd, uint64_t id, ProtoReader *rd)
{
        ProtoWriter w;
        proto_writer_init(&w);
        proto_begin(&w, 6);
        proto_kv_uint(&w, "id", id);
        proto_key(&w, "ok");
        msgpack_pack_true(&w.pk);
        proto_kv_uint(&w, "version", PROTO_VERSION);
        proto_kv_str(&w, "agent", "fuzz");
        proto_kv_str(&w, "kernel", "6.1");
        proto_kv_str(&w, "arch", "x86_64");
        if (proto_end(&w) < 0)
                abort();
        size_t len;
        const uint8_t *p = proto_writer_data(&w, &len);
        fuzz_feed(fd, p, len, len, drain_after, rd);
        proto_writer_done(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0)
                return 0;
        bool greet = data[0] & 1;
        size_t chunk = (size_t) (data[0] >> 1) + 1;
        data++, size--;

        Seen seen = {0};
        ProtoReader rd;
        if (proto_reader_init(&rd) < 0)
                abort();
        AgentClient *c = agent_client_new(fuzz_peer_loop(), "fuzz");
        if (!c || agent_client_connect(c, fuzz_peer_path(), 1000, on_ready, on_lost, &seen) < 0)
                abort();
        int peer = fuzz_peer_accept();
        uint64_t hello = 0;
        for (int i = 0; i < 100 && !hello; i++) {
                fuzz_spin(1);
                hello = drain(peer, &rd);
        }
        bool sent = false;
        if (greet && hello) {
                answer_hello(peer, hello, &rd);
                fuzz_spin(8);
                if (seen.ready_calls == 1 && seen.ready_status == 0) {
                        for (int i = 0; i < NREQS; i++) {
                                Req *r = &seen.reqs[i];
                                r->req = (AgentRequest){.on_chunk = on_chunk, .on_reply = on_reply};
                                ProtoWriter *w = agent_request_begin(c, &r->req, "fuzz", 0);
                                if (!w || agent_request_send(c, &r->req, i == 0 ? 60000 : 0) < 0)
                                        abort();
                        }
                        sent = true;
                }
        }
        msgpack_sbuffer frames;
        msgpack_sbuffer_init(&frames);
        remap_ids(data, size, hello, &frames);
        fuzz_feed(peer, (const uint8_t *) frames.data, frames.size, chunk, drain_after, &rd);
        msgpack_sbuffer_destroy(&frames);
        fuzz_spin(8);
        (void) close(peer);
        fuzz_spin(8);
        c = agent_client_free(c);
        int idle = fuzz_loop_idle();
        proto_reader_done(&rd);
        if (!idle || seen.ready_calls > 1)
                abort();
        for (int i = 0; i < NREQS; i++)
                if (seen.reqs[i].ended != (sent ? 1 : 0))
                        abort();
        return 0;
}
