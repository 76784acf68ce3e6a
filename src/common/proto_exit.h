/* proto_exit.h: how a command ended, as the agent's replies say it (an exec's reply, a
 * run_async's last one): the one description of that shape, written by the agent
 * (ops_exec.c) and read and checked here, since it comes from the guest. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

typedef struct ProtoExit {
        bool has_code; /* it exited with code; else it was killed by sig */
        int64_t code, sig;
        bool timed_out; /* the agent killed it at its timeout */
        uint64_t duration_ns;
} ProtoExit;

/* Reads reply's exit into e: exactly one of exit_code (0-255) and signal (1-64; 0 or nil when
 * it exited), a boolean timed_out and an unsigned duration_ns when present. Returns NULL, or
 * what is wrong (e is then zeroed). */
const char *proto_read_exit(const msgpack_object *reply, ProtoExit *e);
