/* command.h: a guest command from Lua (a shell string or an argv table, plus its options),
 * checked once and packed into an exec or spawn request. */
#pragma once

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "proto.h"

typedef struct Command {
        int cmd_idx, opts_idx;
        bool is_argv;
        size_t argc;
        const char *text; /* the command as shown in messages (kept alive on the Lua stack) */
        const char *cwd;
        const char *stdin_data;
        size_t stdin_len;
        bool env;
        double timeout_s; /* 0: none */
} Command;

/* Validates the command at cmd_idx and the options table at opts_idx (raising Lua errors that
 * name the argument), and fills c. May push one value (the argv text) on the stack. */
void command_check(lua_State *L, int cmd_idx, int opts_idx, bool allow_stdin, Command *c);
/* Number of pairs command_pack adds. */
uint32_t command_nfields(const Command *c);
void command_pack(lua_State *L, const Command *c, ProtoWriter *w);
