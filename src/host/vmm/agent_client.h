/* agent_client.h: one connection to a provium-agent, with requests in flight matched to
 * replies by id (protocol in docs/protocol.md).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "proto.h"

typedef struct AgentClient AgentClient;
typedef struct AgentRequest AgentRequest;

/* A chunk for req: kind is "stdout", "stderr", "data" (bytes in data/len), or another kind
 * ("started", "ack") whose fields are in msg; data is then NULL. */
typedef void (*AgentChunkFn)(AgentRequest *req, const char *kind, const char *data, size_t len,
                             const msgpack_object *msg);
/* The end of req. status 0: reply is the agent's reply map (check its "ok"); status < 0: no
 * reply (-ETIMEDOUT, -ECONNRESET when the connection died, -EBADMSG for a frame from the agent
 * that is not one map or lacks its id or ok, -EMSGSIZE for one over PROTO_MAX_FRAME, -ENOMEM,
 * -ECANCELED when the client is freed, -EHOSTDOWN when the agent answered no heartbeat),
 * reply NULL. After this call the client holds no
 * reference to req. */
typedef void (*AgentReplyFn)(AgentRequest *req, int status, const msgpack_object *reply);

/* Caller-owned; must stay valid until on_reply runs or agent_request_cancel() returns. */
struct AgentRequest {
        AgentChunkFn on_chunk;
        AgentReplyFn on_reply;
        void *data;
        /* private */
        uint64_t id;
        uint64_t deadline_ns; /* 0: none */
        uint64_t started_ns;
        AgentClient *client;
        AgentRequest *prev, *next;
};

/* Called once: status 0 when the hello reply arrived (ready), else why not. */
typedef void (*AgentReadyFn)(AgentClient *c, int status, void *data);
/* Called when the connection is lost after it was ready. Return true to keep the requests in
 * flight pending until the owner calls agent_client_shutdown() (a VM does, once it knows why
 * QEMU went away); false fails them now with status. */
typedef bool (*AgentLostFn)(AgentClient *c, int status, void *data);

AgentClient *agent_client_new(uv_loop_t *loop, const char *name);
/* Connects to the socket at path (retrying while it does not exist yet), sends hello, and
 * calls ready_cb. Returns 0 or -errno (then ready_cb is never called). */
int agent_client_connect(AgentClient *c, const char *path, uint64_t timeout_ms,
                         AgentReadyFn ready_cb, AgentLostFn lost_cb, void *data);
/* The client changes hands (a spare VM's connection adopted by a VM): its name in messages and
 * the data its callbacks get from now on. Returns 0, or -ENOMEM when the name could not be
 * copied (it stays as it was; the data changes in any case). */
int agent_client_set_owner(AgentClient *c, const char *name, void *data);
bool agent_client_ready(const AgentClient *c);
/* The socket is connected (hello may not have been answered yet). */
bool agent_client_connected(const AgentClient *c);
/* fn runs once the socket is connected, before hello is sent (with the connect's data): a VM
 * restoring a saved state starts loading it only then, so the guest never sees the port closed. */
void agent_client_on_connected(AgentClient *c, void (*fn)(AgentClient *c, void *data));
/* The VM behind c was restored to a saved state: requests in flight fail with -ESTALE, and so
 * does every later one; objects made through c (processes, files, workers) belong to the state
 * before. The client stays allocated (its owner frees it) so those objects can still ask. */
void agent_client_retire(AgentClient *c);
bool agent_client_retired(const AgentClient *c);
/* The guest's machine ("x86_64"); NULL before ready or from an agent that does not say. */
const char *agent_client_arch(const AgentClient *c);

/* Starts a request frame {id, op, ...} with nargs more pairs to pack on the returned writer,
 * then agent_request_send(). */
ProtoWriter *agent_request_begin(AgentClient *c, AgentRequest *req, const char *op, uint32_t nargs);
/* Sends the frame begun above and tracks req. timeout_ms 0: no timeout. Returns 0 or -errno
 * (-EMSGSIZE, -ENOTCONN); on error req is not tracked and no callback runs. */
int agent_request_send(AgentClient *c, AgentRequest *req, uint64_t timeout_ms);
/* Sends one more frame for req (an upload chunk); begin it with agent_frame_begin(). */
ProtoWriter *agent_frame_begin(AgentClient *c, uint32_t npairs);
int agent_frame_send(AgentClient *c);
/* Asks the agent to stop request `target` (a `cancel` frame; its own reply is ignored). */
void agent_client_send_cancel(AgentClient *c, uint64_t target);
/* Forgets req: its callbacks will not run; a late reply is ignored. Safe twice. */
void agent_request_cancel(AgentRequest *req);

/* Why c's connection closed: the status its requests failed with (0 while open, or before it
 * ever was), and what such a status means, for messages ("the agent sent a frame over 4 MiB"). */
int agent_client_closed_status(const AgentClient *c);
const char *agent_client_close_text(int status);
/* The heartbeat (agent_client.c): requests in flight on a connection with no frame from the
 * agent for a period (10 s, $PROVIUM_AGENT_HEARTBEAT ms) send a probe; no frame for another
 * period fails them with -EHOSTDOWN. Held while the VM's vCPUs are stopped. */
void agent_client_hold_heartbeat(AgentClient *c, bool held);
uint64_t agent_client_heartbeat_ms(void);

/* Fails every request in flight with status and closes the connection. */
void agent_client_shutdown(AgentClient *c, int status);
/* Frees the client (after failing requests with -ECANCELED). Accepts NULL, returns NULL. */
AgentClient *agent_client_free(AgentClient *c);
