/* runtime_internal.h: the runtime's state, shared by runtime.c (running a file) and
 * runtime_list.c (listing it, and what a kept run asks). Not for other modules: runtime.h is
 * the interface. */
#pragma once

#include "runtime.h"

#define INTERNAL_KEY "provium.internal" /* the prelude's table: tests, run_test */

typedef enum TestStatus { TEST_PASS, TEST_FAIL, TEST_SKIP } TestStatus;

/* A coroutine the runtime drives: a test body, or a branch of provium:parallel. */
typedef struct Task Task;
typedef struct Group Group;

struct Task {
        uint64_t id;
        lua_State *co;
        int ref;
        bool parked;      /* yielded through runtime_wait */
        Pending *pending; /* what it is parked on */
        Group *group;     /* the parallel call it is a branch of; NULL for a test body */
        Group *waiting;   /* the parallel call it is parked in */
        bool background;  /* internal.spawn's: never waited for, ends with the test */
        Task *next;
};

/* One provium:parallel call: lives in a userdata on the caller's stack. */
struct Group {
        Pending pending; /* the caller, parked */
        bool caller_parked;
        unsigned remaining;
        bool settled;
        char *error;
};

struct Runtime {
        uv_loop_t *loop;
        lua_State *L;
        RuntimeConfig cfg;
        uint64_t next_task_id;
        Task *tasks; /* live tasks */
        Task *main;  /* the running test's body, NULL between tests */
        bool test_done;
        TestStatus status;
        char *message;
        bool interrupted;
        char *interrupt_why;
        uv_timer_t *test_timer;
        Vm ***vms; /* slots of the VM userdata, in creation order */
        size_t nvms;
        unsigned stopping; /* VMs whose QEMU has not been reaped yet */
        unsigned passed, failed, skipped;
        uint64_t deadline_ns; /* the running test's timeout, for the count hook; 0: none */
        bool in_chunk;        /* the file's own chunk is running (provium:claim may be called) */
        const char *test;     /* the running test's name (run_one_test owns it), NULL outside */
        char *first_failure;  /* the name of the file's first failed test, NULL before one */
};

/* The file's own chunk, run as a pseudo-test: it registers the tests. False when it failed. */
bool runtime_run_chunk(Runtime *rt);
/* -k: whether test index (1-based) is selected; how many tests the chunk registered. */
bool runtime_test_selected(Runtime *rt, int index);
int runtime_test_count(Runtime *rt);
