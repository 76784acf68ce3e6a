/* proto_exit.c: a command's end in the agent's replies, read and checked (see proto_exit.h). */
#include "proto_exit.h"

const char *proto_read_exit(const msgpack_object *reply, ProtoExit *e)
{
        int has_code, has_sig;

        *e = (ProtoExit){0};
        has_code = proto_get_int(reply, "exit_code", &e->code);
        has_sig = proto_get_int(reply, "signal", &e->sig);
        if (has_sig == 1 && e->sig == 0)
                has_sig = 0;
        if (has_code < 0 || has_sig < 0 || (has_code == 1) == (has_sig == 1) ||
            (has_code == 1 && (e->code < 0 || e->code > 255)) ||
            (has_sig == 1 && (e->sig < 1 || e->sig > 64))) {
                *e = (ProtoExit){0};
                return "not one exit code (0-255) or signal (1-64)";
        }
        if (proto_get_bool(reply, "timed_out", &e->timed_out) < 0 ||
            proto_get_uint(reply, "duration_ns", &e->duration_ns) < 0) {
                *e = (ProtoExit){0};
                return "a mistyped timed_out or duration_ns";
        }
        e->has_code = has_code == 1;
        return NULL;
}
