/* main.c: the provium command line: run tests, manage images, and the internal entry points
 * of the dispatcher's children.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_cmd.h"
#include "check_cmd.h"
#include "cli.h"
#include "config.h"
#include "env.h"
#include "strfmt.h"
#include "coverage_cmd.h"
#include "events_cmd.h"
#include "image.h"
#include "image_cmd.h"
#include "kept_cmd.h"
#include "script.h"
#include "vm.h"

static void usage(FILE *f)
{
        fprintf(
            f,
            "usage: provium [run] [options] PATH...   run *.test.lua files (dirs are walked)\n"
            "       provium image build [NAME|PATH.lua...] [--force]   build images (recipes)\n"
            "       provium image ls\n"
            "       provium image rm NAME...\n"
            "       provium cache ls                  images and fixtures in the cache\n"
            "       provium cache clear [images|fixtures] [NAME...]\n"
            "       provium doctor [--reprobe]        KVM's verdict, QEMU, the cache\n"
            "       provium events FILE|unix:PATH [--json] [--follow] [--type GLOB]\n"
            "                                         print an --events file or a run's live\n"
            "                                         socket: a line (or a JSON object) per event\n"
            "       provium coverage FILE... [--json] [--html DIR] [--universe syscalls]\n"
            "       provium check PATH...             test files' mistakes (syntax, unknown\n"
            "                                         methods and vm:boot options, globals),\n"
            "                                         found without running them\n"
            "       provium debug [options] FILE...   run, with a Lua prompt at each failure\n"
            "       provium shell [RUN] VM            a shell in a VM a run kept (see\n"
            "                                         --keep-on-failure)\n"
            "       provium shell --image NAME        a fresh VM of an image, for poking around\n"
            "       provium ls [--json]               the kept runs\n"
            "       provium stop RUN...|--all         end kept runs: their VMs stop\n"
            "       provium replay EVENTS_FILE [options]   a recorded run's failed tests again,\n"
            "                                         with its seed (docs/determinism.md)\n"
            "       provium init [DIR]                a starter tests/, a CI snippet, .luarc.json\n"
            "       provium help [TOPIC]              this, or a document (api, debugging, ...)\n"
            "       provium list [--json] [-k P] [--shard K/N] PATH...   the files a run\n"
            "                                         takes, their tests and claims (nothing\n"
            "                                         boots: VM operations are refused)\n"
            "\n"
            "options:\n"
            "  --accel auto|kvm|tcg   accelerator (auto: KVM only once the image's kernel has\n"
            "                         booted under it; the verdict is cached: provium doctor)\n"
            "  --vmm qemu|local       what a VM is by default: QEMU with the image's kernel, or\n"
            "                         local: the image's agent as PID 1 of namespaces on the\n"
            "                         host, no kernel of its own (docs/local.md)\n"
            "  --events FILE|unix:PATH  every event as msgpack to FILE, or live to the clients\n"
            "                         of a Unix socket at PATH (repeat for several)\n"
            "  -j, --jobs N           files run at once (default 1)\n"
            "  -k, --filter PATTERN   run only the tests whose \"FILE: name\" (as reported)\n"
            "                         contains PATTERN, plain text; repeat for any of several\n"
            "  --test-timeout S       fail a test after S seconds (default 600)\n"
            "  --op-timeout S         default timeout of a guest operation (default 60)\n"
            "  --boot-timeout S       default timeout of vm:boot (default 120)\n"
            "  --memory SIZE          the pool's memory for files at once (default: what\n"
            "                         the host can give: MemAvailable, cgroup memory.max)\n"
            "  --cpus N               the pool's CPUs (default: this process's, cgroup cpu.max)\n"
            "  --default-claim M[,C]  a file's claim when it makes none (default 1G,1)\n"
            "  --junit FILE           write a JUnit XML report (also to $XML_OUTPUT_FILE)\n"
            "  --artifacts DIR        the run's events, and each failed test's consoles and\n"
            "                         captures (default $TEST_UNDECLARED_OUTPUTS_DIR)\n"
            "  --shard K/N            run the K-th of N shares of the files (1-based); CI\n"
            "                         engines' own variables do it too (docs/ci.md)\n"
            "  --shard-total N        the shards of a Kubernetes Indexed Job\n"
            "                         ($JOB_COMPLETION_INDEX is this one's)\n"
            "  --progress MODE        the live status line: auto (on a terminal, the default),\n"
            "                         always, never\n"
            "  --keep-on-failure      a file's first failure ends it and its VMs (and bridges)\n"
            "                         stay up: provium shell RUN VM, provium ls, provium stop\n"
            "  --keep-always          every file's VMs stay up, failed or not (what provium\n"
            "                         shell --image runs)\n"
            "  --seed N               the run's seed: every random choice (drop patterns, faults,\n"
            "                         provium.random()) derives from it (default: drawn, and\n"
            "                         printed at the start and the end)\n"
            "  --check-determinism    the run twice with one seed; their seeded choices (draws,\n"
            "                         drop patterns, grudges, nemesis faults) must be the same\n"
            "  --pdb                  at a failed test (or provium.breakpoint()), a Lua prompt\n"
            "                         in its scope, its VMs up; one file at a time, no test\n"
            "                         timeout (provium debug FILE is provium run --pdb FILE)\n"
            "  -v, --verbose          more output\n"
            "  --version              print the version\n"
            "\n"
            "exit status: 0 every test passed; 1 a test failed; 2 bad usage or a setup that\n"
            "failed; 3 no VM could start at all (no QEMU, no image, no network namespace);\n"
            "130 interrupted\n");
}

static const char *long_name(const struct option *lo, int c)
{
        for (; lo->name; lo++)
                if (lo->val == c)
                        return lo->name;
        return "?";
}

static int parse_seconds(const char *opt, const char *s, double *ret)
{
        char *end;
        double v = strtod(s, &end);
        if (end == s || *end || !(v >= 0 && v <= 1e6)) { /* NaN and inf too */
                fprintf(stderr, "provium: --%s: expected seconds from 0 to 1000000, got '%s'\n",
                        opt, s);
                return -1;
        }
        *ret = v;
        return 0;
}

static int parse_count(const char *opt, const char *s, unsigned max, unsigned *ret)
{
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || *end || v < 1 || v > (long) max) {
                fprintf(stderr, "provium: %s: expected 1..%u, got '%s'\n", opt, max, s);
                return -1;
        }
        *ret = (unsigned) v;
        return 0;
}

/* --default-claim MEM[,CPUS] */
static int parse_claim(const char *s, uint64_t *mb, unsigned *cpus)
{
        char mem[32];
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t) (comma - s) : strlen(s);
        *cpus = 1;
        if (n >= sizeof mem || (snprintf(mem, sizeof mem, "%.*s", (int) n, s),
                                parse_size_mib(mem, mb) < 0 || *mb < 64)) {
                fprintf(stderr,
                        "provium: --default-claim: expected MEM[,CPUS] like 512M,1, got '%s'\n", s);
                return -1;
        }
        return comma ? parse_count("--default-claim", comma + 1, 1024, cpus) : 0;
}

/* --seed N: decimal or 0x hex, 0 to 2^63-1 (a Lua integer that is never negative). */
static int parse_seed(const char *s, uint64_t *ret)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (end == s || *end || errno || s[0] == '-' || v > 0x7fffffffffffffffull) {
                fprintf(stderr, "provium: --seed: expected an integer from 0 to 2^63-1, got '%s'\n",
                        s);
                return -1;
        }
        *ret = v;
        return 0;
}

static const char *filters[CLI_MAX_FILTERS]; /* -k patterns: pointers into argv */

/* Options of provium run that provium list takes too (the rest would change nothing). */
static bool list_takes(int c)
{
        return strchr("kSNDTLh", c) != NULL;
}

static bool debug_command; /* provium debug: provium run --pdb */

static int cmd_run(int argc, char **argv, bool listing)
{
        bool check_determinism = false;
        bool json = false;
        CliOptions o = {.accel = "auto",
                        .vmm = "qemu",
                        .jobs = 1,
                        .test_timeout_s = 600,
                        .op_timeout_s = 60,
                        .boot_timeout_s = 120,
                        .claim_mb = 1024,
                        .claim_cpus = 1,
                        .progress = "auto",
                        .filters = filters};
        static const struct option longopts[] = {
            {"accel", required_argument, NULL, 'a'},
            {"vmm", required_argument, NULL, 'V'},
            {"events", required_argument, NULL, 'e'},
            {"jobs", required_argument, NULL, 'j'},
            {"test-timeout", required_argument, NULL, 'T'},
            {"op-timeout", required_argument, NULL, 'O'},
            {"boot-timeout", required_argument, NULL, 'B'},
            {"junit", required_argument, NULL, 'J'},
            {"tap", no_argument, NULL, 'P'},
            {"shard", required_argument, NULL, 'S'},
            {"shard-total", required_argument, NULL, 'N'},
            {"memory", required_argument, NULL, 'M'},
            {"cpus", required_argument, NULL, 'C'},
            {"default-claim", required_argument, NULL, 'D'},
            {"filter", required_argument, NULL, 'k'},
            {"artifacts", required_argument, NULL, 'A'},
            {"json", no_argument, NULL, 'L'},
            {"progress", required_argument, NULL, 'R'},
            {"verbose", no_argument, NULL, 'v'},
            {"keep-on-failure", no_argument, NULL, 'K'},
            {"keep-always", no_argument, NULL, 'W'},
            {"pdb", no_argument, NULL, 'G'},
            {"seed", required_argument, NULL, 'Z'},
            {"check-determinism", no_argument, NULL, 'X'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "j:k:vh", longopts, NULL)) != -1) {
                if (listing && c != '?' && !list_takes(c)) {
                        fprintf(stderr, "provium: %s%s is for provium run, not provium list\n",
                                c == 'j' || c == 'v' ? "-" : "--",
                                c == 'j'   ? "j"
                                : c == 'v' ? "v"
                                           : long_name(longopts, c));
                        return 2;
                }
                switch (c) {
                case 'L':
                        if (!listing) {
                                fprintf(stderr, "provium: --json is for provium list (a run's "
                                                "events as JSON: --events FILE, then provium "
                                                "events FILE --json)\n");
                                return 2;
                        }
                        json = true;
                        break;
                case 'A':
                        o.artifacts = optarg;
                        break;
                case 'R':
                        if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "always") != 0 &&
                            strcmp(optarg, "never") != 0) {
                                fprintf(stderr,
                                        "provium: --progress must be auto, always or never, not "
                                        "'%s'\n",
                                        optarg);
                                return 2;
                        }
                        o.progress = optarg;
                        break;
                case 'a':
                        if (strcmp(optarg, "auto") != 0 && strcmp(optarg, "kvm") != 0 &&
                            strcmp(optarg, "tcg") != 0) {
                                fprintf(stderr,
                                        "provium: --accel must be auto, kvm or tcg, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        o.accel = optarg;
                        break;
                case 'V':
                        if (strcmp(optarg, "qemu") != 0 && strcmp(optarg, "local") != 0) {
                                fprintf(stderr, "provium: --vmm must be qemu or local, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        o.vmm = optarg;
                        break;
                case 'e':
                        if (o.nevents == CLI_MAX_EVENTS) {
                                fprintf(stderr, "provium: --events: at most %d\n", CLI_MAX_EVENTS);
                                return 2;
                        }
                        o.events[o.nevents++] = optarg;
                        break;
                case 'j':
                case 'N':
                case 'C': {
                        unsigned *dst = c == 'j' ? &o.jobs : c == 'N' ? &o.shard_total : &o.cpus;
                        unsigned max = c == 'j' ? 256 : c == 'N' ? 10000 : 1024;
                        char name[32];
                        snprintf(name, sizeof name, "--%s", long_name(longopts, c));
                        if (parse_count(name, optarg, max, dst) < 0)
                                return 2;
                        break;
                }
                case 'k':
                        if (o.nfilters == CLI_MAX_FILTERS) {
                                fprintf(stderr, "provium: -k: at most %d patterns\n",
                                        CLI_MAX_FILTERS);
                                return 2;
                        }
                        filters[o.nfilters++] = optarg;
                        break;
                case 'T':
                case 'O':
                case 'B': {
                        double *dst = c == 'T'   ? &o.test_timeout_s
                                      : c == 'O' ? &o.op_timeout_s
                                                 : &o.boot_timeout_s;
                        if (parse_seconds(long_name(longopts, c), optarg, dst) < 0)
                                return 2;
                        break;
                }
                case 'J':
                        o.junit = optarg;
                        break;
                case 'P':
                        o.tap = true;
                        break;
                case 'S':
                        o.shard = optarg;
                        break;
                case 'M':
                        if (parse_size_mib(optarg, &o.memory_mb) < 0 || o.memory_mb < 64) {
                                fprintf(stderr,
                                        "provium: --memory: expected MiB or a size like "
                                        "\"16G\" (at least 64M), got '%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'D':
                        if (parse_claim(optarg, &o.claim_mb, &o.claim_cpus) < 0)
                                return 2;
                        break;
                case 'v':
                        o.verbose = true;
                        break;
                case 'K':
                        o.keep_on_failure = true;
                        break;
                case 'W':
                        o.keep_always = true;
                        break;
                case 'G':
                        o.debug = true;
                        break;
                case 'Z':
                        if (parse_seed(optarg, &o.seed) < 0)
                                return 2;
                        o.seed_given = true;
                        break;
                case 'X':
                        check_determinism = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (debug_command)
                o.debug = true;
        if (o.debug) { /* one file at a time at the person's terminal, no status line under it */
                o.jobs = 1;
                o.progress = "never";
        }
        if (optind >= argc) {
                fprintf(stderr, "provium: no test paths given\n");
                usage(stderr);
                return 2;
        }
        size_t lua_memory;
        if (file_runner_lua_memory(&lua_memory) < 0)
                return 2;
        if (listing)
                return list_cmd_run(&o, json, argv + optind, argc - optind);
        if (check_determinism)
                return determinism_check_main(argc, argv, o.seed, o.seed_given);
        return dispatcher_run(&o, argv + optind, argc - optind);
}

int main(int argc, char **argv)
{
        /* The environment is read here, once, before any thread starts (env.h). */
        if (env_init() < 0) {
                fprintf(stderr, "provium: %s\n", strerror(ENOMEM));
                return 2;
        }
        if (argc >= 2 && (strcmp(argv[1], "__pdeathsig") == 0 || strcmp(argv[1], "__qemu") == 0))
                return vm_pdeathsig_exec(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "__build") == 0)
                return script_wrapper_main(argc - 1, argv + 1);
        script_set_wrapper("/proc/self/exe");
        if (argc >= 2 && strcmp(argv[1], "__local-vm") == 0)
                return vm_local_sandbox_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "__run-file") == 0)
                return file_runner_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "__list-file") == 0)
                return file_lister_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
                printf("provium %s\n", PROVIUM_VERSION);
                return 0;
        }
        if (argc >= 3 && strcmp(argv[1], "help") == 0)
                return help_cmd_main(argv[2]);
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)) {
                usage(stdout);
                help_list_topics(stdout);
                return 0;
        }
        if (argc >= 2 && strcmp(argv[1], "replay") == 0)
                return replay_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "init") == 0)
                return init_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "image") == 0)
                return image_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "doctor") == 0)
                return doctor_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "cache") == 0)
                return cache_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "events") == 0)
                return events_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "coverage") == 0)
                return coverage_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "check") == 0)
                return check_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "debug") == 0) {
                debug_command = true;
                return cmd_run(argc - 1, argv + 1, false);
        }
        if (argc >= 2 && strcmp(argv[1], "shell") == 0)
                return shell_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "ls") == 0)
                return ls_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "stop") == 0)
                return stop_cmd_main(argc - 1, argv + 1);
        if (argc >= 2 && strcmp(argv[1], "list") == 0)
                return cmd_run(argc - 1, argv + 1, true);
        if (argc >= 2 && strcmp(argv[1], "run") == 0)
                return cmd_run(argc - 1, argv + 1, false);
        return cmd_run(argc, argv, false);
}
