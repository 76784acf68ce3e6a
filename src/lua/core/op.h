/* op.h: guest operations from Lua: where they go (Target), their in-flight context (Op), the
 * option helpers every method shares, and the reply handling that resumes the caller.
 */
#pragma once

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent_client.h"

/* Why an object made before vm:restore no longer works (status -ESTALE). */
#define STALE_MSG "it belongs to the VM's state before vm:restore()"
#include "runtime.h"
#include "vm.h"

#define VM_MT     "provium.VM"
#define WORKER_MT "provium.Worker"

typedef struct WorkerBox {
        Vm **slot;          /* the VM's userdata slot: NULL once the file closed the VM */
        AgentClient *agent; /* owned by the VM */
        int index;
} WorkerBox;

/* Where an operation goes: the VM's main connection or one of its workers. */
typedef struct Target {
        Vm *vm;
        AgentClient *agent;
        char label[64]; /* "a", or "a/worker1" */
} Target;

/* The live VM of the VM userdata at index i (raises if it is not one, or was closed). */
Vm *check_vm(lua_State *L, int i);
/* The VM or Worker userdata at index i (raises otherwise). */
Target check_target(lua_State *L, int i);

/* A growable byte buffer; oom is sticky. */
/* What vm:run keeps of a command's stdout and of its stderr, each: a guest that writes more
 * (a runaway loop) fails the call instead of filling the host's memory. */
#define OP_OUTPUT_MAX (64u << 20)

typedef struct Buf {
        char *p;
        size_t len, cap;
        bool oom;     /* an allocation failed */
        bool too_big; /* past OP_OUTPUT_MAX */
} Buf;

void buf_add(Buf *b, const char *p, size_t n);

struct Op;
/* What an operation adds to its op event (layer0's syscall and ioctl: docs/events.md). */
typedef struct OpEventHooks {
        uint32_t nfields; /* how many fields pack() adds */
        /* Packs them; reply is NULL when the agent did not answer (a timeout, a dead VM). */
        void (*pack)(struct Op *op, ProtoWriter *w, const msgpack_object *reply);
        /* The errno name of a call the agent made that failed (the event's ok is then false
         * and its error this name), or NULL. */
        const char *(*failed)(struct Op *op, const msgpack_object *reply);
} OpEventHooks;

typedef struct Op {
        AgentRequest req; /* first: the callbacks get &op->req */
        Pending pending;
        Vm *vm;
        AgentClient *agent;
        char *vm_name;
        const char *name; /* "exec", "read_file"... */
        char *object;     /* the path or command, for messages */
        uint64_t t0;
        double timeout_s;
        double agent_timeout_s; /* a shorter timeout the agent enforces itself, or 0 */
        Buf out, err;
        int (*push_ok)(lua_State *co, struct Op *op, const msgpack_object *reply);
        void (*cleanup)(struct Op *op); /* extra teardown of a larger struct that embeds Op */
        const OpEventHooks *event;      /* extra fields of its op event, or NULL */
} Op;

/* A new operation on tg; NULL on -ENOMEM. Its callbacks are set: the reply resumes the caller with
 * push_ok's values, or nil and a message naming the VM, the operation, the object and the reason.
 */
Op *op_new(const Target *tg, const char *name, const char *object, double timeout_s);
/* The same for a larger struct that starts with an Op (size bytes, zeroed); op_free frees it
 * whole, after its cleanup hook. */
Op *op_new_sized(const Target *tg, const char *name, const char *object, double timeout_s,
                 size_t size);
void op_free(Op *op);
/* For a push_ok whose reply does not say what its request asked for (a field missing, more
 * bytes than asked): pushes nil and "vm NAME: OP OBJECT: the agent's reply is not valid: what";
 * returns 2. The guest is not trusted. */
int op_push_bad_reply(lua_State *co, const Op *op, const char *what);
void op_on_reply(AgentRequest *req, int status, const msgpack_object *reply);
void op_on_chunk(AgentRequest *req, const char *kind, const char *data, size_t len,
                 const msgpack_object *msg);
void op_cancel(Pending *p);
/* Sends the request begun with agent_request_begin(tg.agent, &op->req, ...) and parks. */
int op_send(lua_State *L, Op *op);
/* Pushes nil and a message when tg cannot take operations now; returns 2 then, else 0. */
int check_running(lua_State *L, const Target *tg, const char *op, const char *object);

/* A push_ok for operations whose success carries nothing: pushes true. */
int op_push_true(lua_State *co, Op *op, const msgpack_object *reply);

/* Options (opts is a stack index; a non-table means "none given"). */
double opt_timeout(lua_State *L, int opts, const char *field);
/* The string argument i, which becomes a C string (a path, an argument): one with a NUL byte
 * in it raises instead of being cut there. */
const char *check_cstring(lua_State *L, int i);
/* Timeouts: seconds from 0 (none) to OP_SECONDS_MAX. check_seconds raises "<what>: a timeout
 * must be ..." for anything else (NaN, infinite, negative, huge: their casts to integers are
 * undefined), or returns s; none_ok lets -1 (no timeout) through. seconds_to_ms rounds up, so
 * that a positive timeout under 1 ms is 1 ms, not none. */
#define OP_SECONDS_MAX 1e6
double check_seconds(lua_State *L, double s, const char *what, bool none_ok);
uint64_t seconds_to_ms(double s);
const char *opt_string(lua_State *L, int opts, const char *field);
bool has_field(lua_State *L, int opts, const char *field);
/* Permission bits in opts[field] (default def); raises unless 0..07777. */
lua_Integer opt_mode(lua_State *L, int opts, const char *field, lua_Integer def);

#define NEW_OP_OR_FAIL(op, L, tg, name, object, timeout)                                           \
        do {                                                                                       \
                op = op_new(&tg, name, object, timeout);                                           \
                if (!op)                                                                           \
                        return luaL_error(L, "vm %s: %s: out of memory", tg.label, name);          \
        } while (0)
