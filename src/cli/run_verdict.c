/* run_verdict.c: the run's exit status (run_verdict.h). */
#include "run_verdict.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "events.h"

static struct {
        unsigned vms_started; /* vm.boot / vm.restore that ended ok */
        unsigned infra;       /* infra.error events */
        char what[16];        /* the first one's */
        char error[1024];
} verdict;

static void on_infra(const msgpack_object *ev, void *data)
{
        if (verdict.infra++ > 0)
                return;
        proto_copy_str(ev, "what", verdict.what, sizeof verdict.what);
        proto_copy_str(ev, "error", verdict.error, sizeof verdict.error);
}

static void on_vm_ready(const msgpack_object *ev, void *data)
{
        bool ok;
        if (proto_get_bool(ev, "ok", &ok) == 1 && ok)
                verdict.vms_started++;
}

static void verdict_sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        if (strcmp(type, "infra.error") == 0)
                (void) events_decode(mp, len, on_infra, NULL);
        else if (strcmp(type, "vm.boot") == 0 || strcmp(type, "vm.restore") == 0)
                (void) events_decode(mp, len, on_vm_ready, NULL);
}

void run_verdict_start(void)
{
        if (events_subscribe(verdict_sink, NULL) < 0)
                fprintf(stderr, "provium: out of memory: exit status 3 cannot be told apart\n");
}

int run_verdict_finish(unsigned failed, bool no_match, bool interrupted)
{
        if (interrupted)
                return RUN_INTERRUPTED;
        if (failed && verdict.infra && !verdict.vms_started) {
                /* one line: the message's own lines joined, the console tail left out */
                char *tail = strstr(verdict.error, "\n--- last console lines ---");
                if (tail)
                        *tail = 0;
                for (char *p = verdict.error; (p = strchr(p, '\n'));)
                        *p = ' ';
                for (size_t n = strlen(verdict.error); n > 0 && verdict.error[n - 1] == ' ';)
                        verdict.error[--n] = 0;
                fprintf(stderr,
                        "provium: no VM could start: %s is missing (%s); exit status %d: the "
                        "host, not the tests\n",
                        strcmp(verdict.what, "qemu") == 0    ? "QEMU"
                        : strcmp(verdict.what, "image") == 0 ? "the default image"
                                                             : "a network namespace",
                        verdict.error, RUN_NO_INFRA);
                return RUN_NO_INFRA;
        }
        return failed || no_match ? RUN_FAILED : RUN_PASSED;
}
