/* debug_prompt.c: provium debug's prompt (prelude/debug.lua runs the REPL over it).
 *
 * internal.read_line(prompt) reads a line at the person's terminal (the dispatcher hands its
 * stdin to the runner as RuntimeConfig.debug_fd) with libedit's line editing and history,
 * through its callback interface: the loop polls the terminal and gives libedit each character,
 * the test's task parked meanwhile, so consoles are drained and agents answered while the
 * person types. The terminal's settings are put back at exit, should the run end mid-line.
 */
#include <editline/readline.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "debug_prompt.h"
#include "runtime.h"

typedef struct LineWait {
        Pending pending;
        char *line; /* NULL at end of input */
} LineWait;

static struct {
        bool ready;
        FILE *in;
        struct termios saved;
        bool saved_ok;
        uv_poll_t poll; /* the terminal, readable: libedit takes a character */
        bool poll_open;
        LineWait *waiting;      /* the read in progress, NULL between reads */
        char history[PATH_MAX]; /* "" when there is no home for it */
} prompt;

static void restore_terminal(void)
{
        if (prompt.waiting)
                rl_callback_handler_remove();
        if (prompt.saved_ok)
                (void) tcsetattr(fileno(prompt.in), TCSANOW, &prompt.saved);
}

/* $XDG_STATE_HOME/provium/debug_history, or ~/.local/state/provium/debug_history. */
static void history_path(void)
{
        const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
        char dir[PATH_MAX - 32];
        if (state && state[0] == '/')
                snprintf(dir, sizeof dir, "%s/provium", state);
        else if (home && home[0] == '/')
                snprintf(dir, sizeof dir, "%s/.local/state/provium", home);
        else
                return;
        for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
                *p = 0;
                (void) mkdir(dir, 0700);
                *p = '/';
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return;
        snprintf(prompt.history, sizeof prompt.history, "%s/debug_history", dir);
}

static int prompt_setup(uv_loop_t *loop, int fd)
{
        if (!prompt.ready) {
                prompt.in = fdopen(fd, "r");
                if (!prompt.in)
                        return -errno;
                prompt.saved_ok = tcgetattr(fd, &prompt.saved) == 0;
                atexit(restore_terminal);
                rl_instream = prompt.in;
                rl_outstream = stderr;
                using_history();
                history_path();
                if (prompt.history[0])
                        (void) read_history(prompt.history);
                prompt.ready = true;
        }
        if (!prompt.poll_open) {
                int r = uv_poll_init(loop, &prompt.poll, fd);
                if (r < 0)
                        return r;
                prompt.poll_open = true;
                uv_unref((uv_handle_t *) &prompt.poll);
        }
        return 0;
}

/* Ends the read in progress: libedit lets go of the terminal. */
static LineWait *read_end(void)
{
        LineWait *lw = prompt.waiting;
        prompt.waiting = NULL;
        rl_callback_handler_remove();
        if (prompt.poll_open && !uv_is_closing((uv_handle_t *) &prompt.poll))
                (void) uv_poll_stop(&prompt.poll);
        return lw;
}

static int push_line(lua_State *L, void *ud)
{
        LineWait *lw = ud;
        if (lw->line)
                lua_pushstring(L, lw->line);
        else
                lua_pushnil(L);
        return 1;
}

/* libedit's: a whole line was typed (NULL: end of input). */
static void on_line(char *line)
{
        LineWait *lw = read_end();
        if (!lw) {
                free(line);
                return;
        }
        lw->line = line;
        runtime_resume_push(&lw->pending, push_line, lw, "a line at the prompt");
        free(lw->line);
        free(lw);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
        (void) h;
        (void) events;
        if (status < 0) {
                on_line(NULL);
                return;
        }
        rl_callback_read_char();
}

static void read_cancel(Pending *p)
{
        LineWait *lw = (LineWait *) ((char *) p - offsetof(LineWait, pending));
        if (prompt.waiting == lw)
                (void) read_end();
        free(lw);
}

/* internal.read_line(prompt) -> line | nil at end of input (Ctrl-D) */
static int l_read_line(lua_State *L)
{
        const char *text = luaL_checkstring(L, 1);
        Runtime *rt = runtime_get(L);
        const RuntimeConfig *cfg = rt ? runtime_config(rt) : NULL;
        if (!cfg || cfg->debug_fd < 0)
                return luaL_error(L, "the debug prompt needs provium debug (or --pdb)");
        if (prompt.waiting)
                return luaL_error(L, "the debug prompt is already reading a line");
        int r = prompt_setup(runtime_loop(rt), cfg->debug_fd);
        if (r < 0)
                return luaL_error(L, "the debug prompt: %s", strerror(-r));
        LineWait *lw = calloc(1, sizeof *lw);
        if (!lw)
                return luaL_error(L, "the debug prompt: %s", strerror(ENOMEM));
        r = uv_poll_start(&prompt.poll, UV_READABLE, on_readable);
        if (r < 0) {
                free(lw);
                return luaL_error(L, "the debug prompt: %s", uv_strerror(r));
        }
        lw->pending.cancel = read_cancel;
        prompt.waiting = lw;
        rl_callback_handler_install(text, on_line);
        return runtime_wait(L, &lw->pending);
}

/* internal.add_history(line): kept for the next prompt, and in the history file */
static int l_add_history(lua_State *L)
{
        const char *line = luaL_checkstring(L, 1);
        if (!prompt.ready)
                return 0;
        add_history(line);
        if (prompt.history[0])
                (void) write_history(prompt.history);
        return 0;
}

/* internal.debugging() -> whether this run stops at failures (provium debug, --pdb) */
static int l_debugging(lua_State *L)
{
        Runtime *rt = runtime_get(L);
        lua_pushboolean(L, rt && runtime_config(rt)->debug_fd >= 0);
        return 1;
}

void bind_debug_prompt_register(lua_State *L)
{
        lua_pushcfunction(L, l_read_line);
        lua_setfield(L, -2, "read_line");
        lua_pushcfunction(L, l_add_history);
        lua_setfield(L, -2, "add_history");
        lua_pushcfunction(L, l_debugging);
        lua_setfield(L, -2, "debugging");
}
