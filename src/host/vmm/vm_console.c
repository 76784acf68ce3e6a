/* vm_console.c: a VM's serial console (QEMU's stdout): kept whole up to CONSOLE_MAX, its tail
 * in a ring, handed to a watcher live, and input written to it; and QEMU's own stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_internal.h"

static void console_append(Vm *vm, const char *p, size_t n)
{
        if (vm->console_len < CONSOLE_MAX) {
                size_t take = n < CONSOLE_MAX - vm->console_len ? n : CONSOLE_MAX - vm->console_len;
                size_t need = vm->console_len + take + 1;
                size_t cap = 4096;
                while (cap < need)
                        cap *= 2;
                char *c = realloc(vm->console, cap);
                if (c) {
                        vm->console = c;
                        memcpy(vm->console + vm->console_len, p, take);
                        vm->console_len += take;
                        vm->console[vm->console_len] = 0;
                }
        }
        for (size_t i = 0; i < n; i++)
                vm->tail[(vm->tail_total + i) % CONSOLE_TAIL] = p[i];
        vm->tail_total += n;
        if (vm->console_fn)
                vm->console_fn(vm->console_data, p, n);
}

const char *vm_console_log(const Vm *vm, size_t *ret_len)
{
        *ret_len = vm->console_len;
        return vm->console_len ? vm->console : "";
}

char *vm_console_tail(const Vm *vm, unsigned nlines)
{
        size_t n = vm->tail_total < CONSOLE_TAIL ? vm->tail_total : CONSOLE_TAIL;
        char *s = malloc(n + 1);
        if (!s)
                return NULL;
        size_t start = vm->tail_total - n;
        for (size_t i = 0; i < n; i++)
                s[i] = vm->tail[(start + i) % CONSOLE_TAIL];
        s[n] = 0;
        /* Drop a trailing newline, then walk back nlines line starts. */
        size_t end = n;
        while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r'))
                s[--end] = 0;
        size_t pos = end;
        for (unsigned l = 0; pos > 0; pos--)
                if (s[pos - 1] == '\n' && ++l == nlines)
                        break;
        memmove(s, s + pos, end - pos + 1);
        return s;
}

/* Lines that say what went wrong in a guest kernel, for vm_console_excerpt. */
static const char *const console_causes[] = {
    "Kernel panic",  "BUG:",        "Oops",      "general protection fault",
    "Out of memory", "soft lockup", "hung_task", "blocked for more than",
};

static const char *console_cause(const char *line, size_t len)
{
        for (size_t i = 0; i < sizeof console_causes / sizeof *console_causes; i++) {
                size_t k = strlen(console_causes[i]);
                for (size_t j = 0; j + k <= len; j++)
                        if (memcmp(line + j, console_causes[i], k) == 0)
                                return console_causes[i];
        }
        return NULL;
}

char *vm_console_excerpt(const Vm *vm, unsigned nlines)
{
        char *s = vm_console_tail(vm, 200);
        if (!s)
                return NULL;
        size_t w = 0; /* carriage returns out */
        for (size_t r = 0; s[r]; r++)
                if (s[r] != '\r')
                        s[w++] = s[r];
        s[w] = 0;
        size_t nl = 0;
        for (size_t i = 0; i < w; i++)
                nl += s[i] == '\n';
        const char *cause = NULL;
        size_t cause_len = 0, line_no = 0;
        for (const char *p = s; *p && !cause; line_no++) { /* the first such line */
                size_t len = strcspn(p, "\n");
                if (console_cause(p, len))
                        cause = p, cause_len = len;
                else
                        p += len + (p[len] == '\n');
        }
        size_t skip = nl + 1 > nlines ? nl + 1 - nlines : 0; /* lines before the tail */
        const char *tail = s;
        for (size_t i = 0; i < skip; i++)
                tail = strchr(tail, '\n') + 1;
        char *out = NULL;
        if (cause && line_no - 1 < skip) {
                if (asprintf(&out, "%.*s\n[...]\n%s", (int) cause_len, cause, tail) < 0)
                        out = NULL;
        } else
                out = strdup(tail);
        free(s);
        return out;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        static char scratch[65536];
        *buf = uv_buf_init(scratch, sizeof scratch);
}

static void console_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        Vm *vm = s->data;
        if (n > 0)
                console_append(vm, buf->base, (size_t) n);
        else if (n < 0) {
                uv_read_stop(s);
                vm->console_eof = true;
                vm_exit_progress(vm);
        }
}

static void qemu_err_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        Vm *vm = s->data;
        if (n > 0) {
                size_t room = QEMU_ERR_MAX - 1 - vm->qemu_err_len;
                size_t take = (size_t) n < room ? (size_t) n : room;
                memcpy(vm->qemu_err + vm->qemu_err_len, buf->base, take);
                vm->qemu_err_len += take;
                vm->qemu_err[vm->qemu_err_len] = 0;
        } else if (n < 0)
                uv_read_stop(s);
}

int vm_console_start(Vm *vm)
{
        int r = uv_read_start((uv_stream_t *) vm->out, alloc_cb, console_read_cb);
        return r ? r : uv_read_start((uv_stream_t *) vm->err, alloc_cb, qemu_err_read_cb);
}

void vm_console_watch(Vm *vm, void (*fn)(void *data, const char *p, size_t n), void *data)
{
        vm->console_fn = fn;
        vm->console_data = data;
}

static void on_console_written(uv_write_t *wr, int status)
{
        free(wr);
}

int vm_console_write(Vm *vm, const char *p, size_t n)
{
        if (!vm->in || vm_state(vm) == VM_EXITED)
                return -EPIPE;
        uv_write_t *wr = malloc(sizeof *wr + n);
        if (!wr)
                return -ENOMEM;
        memcpy(wr + 1, p, n);
        uv_buf_t buf = uv_buf_init((char *) (wr + 1), (unsigned) n);
        int r = uv_write(wr, (uv_stream_t *) vm->in, &buf, 1, on_console_written);
        if (r < 0)
                free(wr);
        return r;
}
