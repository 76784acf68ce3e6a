/* ops_net.c: netem: delay, loss, duplication, corruption and reordering on a guest interface,
 * on what it sends (egress), what it receives (ingress, ops_ingress.c) or both, through
 * rtnetlink (rtnl.c).
 *
 * Egress: the root qdisc of the interface is replaced by netem (RTM_NEWQDISC, NLM_F_CREATE |
 * NLM_F_REPLACE, like `tc qdisc replace dev IF root netem delay D J`); a second request changes
 * the netem in place. A request sets netem on the directions it names and takes it off the
 * others, so it replaces the one before in both. clear deletes the root qdisc (RTM_DELQDISC),
 * which brings back the interface's default one, and what ingress made. sch_netem is shipped as
 * an on-demand module and loaded on first use.
 *
 * Times go to the kernel in its packet scheduler ticks; the conversion is iproute2's
 * (tc_core.c): /proc/net/psched holds t2us, us2t and clock_res in hex, and
 * ticks = us * t2us / us2t * clock_res / 1e6 (t2us = us2t when clock_res is 1e9, a
 * compatibility hack of the kernel). On Linux >= 2.6.34: 1000, 64, 1000000: 15.625 ticks per
 * microsecond (64 ns ticks).
 *
 * Sections: ticks, the qdisc, the request, op.
 */
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "netem.h"
#include "rtnl.h"

#define NETEM_LIMIT  1000u                 /* packets queued, tc's default */
#define NETEM_MAX_US (60ull * 1000 * 1000) /* delay and jitter: at most a minute */
#define NETEM_NPROBS 8

/* ---- ticks ---- */

/* Reads the microseconds-to-ticks factor from /proc/net/psched. Returns 0 or -errno. */
static int psched_ticks_per_us(double *ret)
{
        FILE *f = fopen("/proc/net/psched", "re");
        if (!f)
                return -errno;
        unsigned t2us, us2t, clock_res;
        int n = fscanf(f, "%08x%08x%08x", &t2us, &us2t, &clock_res);
        (void) fclose(f);
        if (n != 3 || us2t == 0 || t2us == 0 || clock_res == 0)
                return -EIO;
        if (clock_res == 1000000000)
                t2us = us2t;
        *ret = (double) t2us / us2t * ((double) clock_res / 1000000.0);
        return 0;
}

/* us in ticks, or -ERANGE when it does not fit the kernel's 32 bits. */
static int64_t us_to_ticks(uint64_t us, double ticks_per_us)
{
        double t = (double) us * ticks_per_us;
        if (t > (double) UINT32_MAX)
                return -ERANGE;
        return (int64_t) t; /* truncated, as tc_core_time2tick() */
}

/* ---- the qdisc ---- */

/* netem's TCA_OPTIONS: its struct, then nested attributes of their own (iproute2's layout). */
int netem_root_replace(int ifindex, const NetemSpec *spec, char *kmsg)
{
        RtnlReq m;
        struct tcmsg *tc = rtnl_begin(&m, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_REPLACE, sizeof *tc);
        tc->tcm_family = AF_UNSPEC;
        tc->tcm_ifindex = ifindex;
        tc->tcm_parent = TC_H_ROOT;
        (void) rtnl_attr(&m, TCA_KIND, "netem", sizeof "netem");
        struct rtattr *opt = rtnl_attr(&m, TCA_OPTIONS, &spec->q, sizeof spec->q);
        (void) rtnl_attr(&m, TCA_NETEM_CORR, &spec->corr, sizeof spec->corr);
        (void) rtnl_attr(&m, TCA_NETEM_REORDER, &spec->reorder, sizeof spec->reorder);
        (void) rtnl_attr(&m, TCA_NETEM_CORRUPT, &spec->corrupt, sizeof spec->corrupt);
        if (spec->gilbert)
                (void) rtnl_attr(&m, TCA_NETEM_LOSS, &spec->ge, sizeof spec->ge);
        rtnl_nest_end(&m, opt);
        return rtnl_talk(&m, kmsg, RTNL_KMSG_SIZE);
}

int netem_root_delete(int ifindex, char *kmsg)
{
        RtnlReq m;
        struct tcmsg *tc = rtnl_begin(&m, RTM_DELQDISC, 0, sizeof *tc);
        tc->tcm_family = AF_UNSPEC;
        tc->tcm_ifindex = ifindex;
        tc->tcm_parent = TC_H_ROOT;
        int r = rtnl_talk(&m, kmsg, RTNL_KMSG_SIZE);
        /* ENOENT: the root qdisc is the default one (handle 0): nothing to delete. */
        return r == -ENOENT ? 0 : r;
}

/* ---- the request ---- */

typedef struct NetemReq {
        char ifname[IFNAMSIZ];
        bool clear, egress, ingress;
        uint64_t delay_us, jitter_us;
        uint32_t prob[NETEM_NPROBS]; /* on tc's scale: 2^32 - 1 is 1 */
} NetemReq;

/* probabilities and correlations in parts per million, 0..1000000 */
static const char *const ppm_fields[NETEM_NPROBS] = {
    "loss_ppm",    "loss_corr_ppm",    "duplicate_ppm", "duplicate_corr_ppm",
    "corrupt_ppm", "corrupt_corr_ppm", "reorder_ppm",   "reorder_corr_ppm"};

/* Reads an optional uint field (default 0) no larger than NETEM_MAX_US. Returns 1, 0 (absent) or
 * <0. */
static int get_us(const msgpack_object *req, const char *key, uint64_t *ret)
{
        *ret = 0;
        int r = proto_get_uint(req, key, ret);
        if (r > 0 && *ret > NETEM_MAX_US)
                return -ERANGE;
        return r;
}

/* Reads the fields of req into nr. Returns NULL, or the bad field's name (its error in *err:
 * 0 for missing, or -errno). */
static const char *parse_request(const msgpack_object *req, NetemReq *nr, int *err)
{
        const char *name;
        size_t len;
        int r = proto_get_bytes(req, "ifname", &name, &len);
        if (r <= 0 || len == 0 || len >= IFNAMSIZ || memchr(name, 0, len) || memchr(name, '/', len))
                return *err = r <= 0 ? r : -EINVAL, "ifname";
        memcpy(nr->ifname, name, len);
        nr->ifname[len] = 0;
        nr->egress = true;
        const struct {
                const char *key;
                bool *v;
        } bools[] = {{"clear", &nr->clear}, {"egress", &nr->egress}, {"ingress", &nr->ingress}};
        for (size_t i = 0; i < sizeof bools / sizeof *bools; i++)
                if ((r = proto_get_bool(req, bools[i].key, bools[i].v)) < 0)
                        return *err = r, bools[i].key;
        r = get_us(req, "delay_us", &nr->delay_us);
        if (r < 0 || (r == 0 && !nr->clear))
                return *err = r, "delay_us";
        if ((r = get_us(req, "jitter_us", &nr->jitter_us)) < 0)
                return *err = r, "jitter_us";
        for (size_t i = 0; i < NETEM_NPROBS; i++) {
                uint64_t v = 0;
                r = proto_get_uint(req, ppm_fields[i], &v);
                if (r < 0 || v > 1000000)
                        return *err = r < 0 ? r : -ERANGE, ppm_fields[i];
                nr->prob[i] = (uint32_t) ((double) v / 1e6 * (double) UINT32_MAX); /* tc's scale */
        }
        return NULL;
}

/* The qdisc's parameters for nr. Returns 0 or -errno (-ERANGE: a time too long in ticks). */
static int spec_build(const NetemReq *nr, NetemSpec *spec)
{
        double ticks_per_us = 0;
        int r = psched_ticks_per_us(&ticks_per_us);
        if (r < 0)
                return r;
        int64_t lat = us_to_ticks(nr->delay_us, ticks_per_us),
                jit = us_to_ticks(nr->jitter_us, ticks_per_us);
        if (lat < 0 || jit < 0)
                return -ERANGE;
        const uint32_t *prob = nr->prob;
        *spec =
            (NetemSpec){.q = {.latency = (uint32_t) lat,
                              .limit = NETEM_LIMIT,
                              .jitter = (uint32_t) jit,
                              .loss = prob[0],
                              .duplicate = prob[2],
                              .gap = prob[6] ? 1 : 0}, /* tc's: reordering without a gap */
                        .corr = {.dup_corr = prob[3]},
                        .reorder = {.probability = prob[6], .correlation = prob[7]},
                        .corrupt = {.probability = prob[4], .correlation = prob[5]},
                        .ge = {.hdr = {.rta_len = (unsigned short) RTA_LENGTH(sizeof spec->ge.ge),
                                       .rta_type = NETEM_LOSS_GE}}};
        /* Loss with a correlation is the Gilbert model, not netem's own loss correlation, which
         * neither keeps the loss rate nor makes bursts (docs/determinism.md): a good state that
         * loses nothing, a bad one that loses all, mean burst 1 / (1 - c) and loss L on the
         * whole: r = 1 - c, p = L r / (1 - L). */
        spec->gilbert = prob[1] > 0 && prob[0] > 0 && prob[0] < UINT32_MAX;
        if (spec->gilbert) {
                double l = (double) prob[0] / UINT32_MAX, c = (double) prob[1] / UINT32_MAX;
                double rr = 1.0 - c, p = l * rr / (1.0 - l);
                spec->ge.ge.p = (uint32_t) ((p > 1.0 ? 1.0 : p) * UINT32_MAX);
                spec->ge.ge.r = (uint32_t) (rr * UINT32_MAX);
                spec->q.loss = 0;
        }
        return 0;
}

/* Loads sch_netem once. Returns 0 or -errno. */
static int netem_module(void)
{
        static atomic_bool loaded; /* sch_netem is in: no need to look again */
        if (atomic_load(&loaded))
                return 0;
        int r = modules_load_ondemand("sch_netem");
        /* ENOENT: not shipped; the kernel may have it built in, or autoload it */
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == 0)
                atomic_store(&loaded, true);
        return 0;
}

/* ---- op ---- */

static int netem_reply_err(Server *s, uint64_t id, int err, const char *what, const char *ifname,
                           const char *kmsg)
{
        if (kmsg[0])
                return server_reply_errno(s, id, err, "netem %s: %s (%s)", ifname, what, kmsg);
        return server_reply_errno(s, id, err, "netem %s: %s", ifname, what);
}

/* Sets (set) or takes off the egress netem of ifindex, then the ingress one (ops_ingress.c),
 * as nr says. */
static int netem_apply(Server *s, uint64_t id, const NetemReq *nr, int ifindex,
                       const NetemSpec *spec)
{
        char kmsg[RTNL_KMSG_SIZE];
        bool set = !nr->clear && nr->egress;
        int r = set ? netem_root_replace(ifindex, spec, kmsg) : netem_root_delete(ifindex, kmsg);
        if (r < 0)
                return netem_reply_err(
                    s, id, -r, set ? "replace the root qdisc with netem" : "delete the root qdisc",
                    nr->ifname, kmsg);
        const char *what = "";
        set = !nr->clear && nr->ingress;
        r = set ? ingress_set(nr->ifname, ifindex, spec, &what, kmsg)
                : ingress_clear(nr->ifname, ifindex, &what, kmsg);
        if (r < 0)
                return netem_reply_err(s, id, -r, what, nr->ifname, kmsg);
        if (s->debug && !nr->clear)
                agent_log("netem %s: delay %" PRIu64 " us (%" PRIu32 " ticks), jitter %" PRIu64
                          " us (%" PRIu32 " ticks)%s%s",
                          nr->ifname, nr->delay_us, spec->q.latency, nr->jitter_us, spec->q.jitter,
                          nr->egress ? ", egress" : "", nr->ingress ? ", ingress" : "");
        server_begin_ok(s, id, 0);
        return server_flush(s);
}

int net_netem(Server *s, uint64_t id, const msgpack_object *req)
{
        NetemReq nr = {0};
        int r = 0;
        const char *bad = parse_request(req, &nr, &r);
        if (bad)
                return server_reply_field(s, id, "netem", bad, r);
        const msgpack_object *seed = proto_get(req, "seed");
        if (seed && seed->type != MSGPACK_OBJECT_NIL)
                return server_reply_errno(s, id, EOPNOTSUPP,
                                          "netem %s: seed (the kernel's netem draws its own)",
                                          nr.ifname);
        if (!nr.clear && !nr.egress && !nr.ingress)
                return server_reply_errno(s, id, EINVAL, "netem %s: egress and ingress both false",
                                          nr.ifname);
        if (!nr.clear && nr.prob[6] && nr.delay_us == 0)
                return server_reply_errno(
                    s, id, EINVAL,
                    "netem %s: reorder needs a delay (the frames not reordered wait it)",
                    nr.ifname);
        unsigned idx = if_nametoindex(nr.ifname);
        if (idx == 0 || idx > INT32_MAX)
                return server_reply_errno(s, id, idx ? ERANGE : errno, "netem %s", nr.ifname);
        NetemSpec spec = {0};
        if (!nr.clear) {
                r = spec_build(&nr, &spec);
                if (r == -ERANGE)
                        return server_reply_errno(
                            s, id, ERANGE, "netem %s: delay %" PRIu64 " us, jitter %" PRIu64 " us",
                            nr.ifname, nr.delay_us, nr.jitter_us);
                if (r < 0)
                        return server_reply_errno(s, id, -r, "netem %s: read /proc/net/psched",
                                                  nr.ifname);
                if ((r = netem_module()) < 0)
                        return server_reply_errno(s, id, -r, "netem %s: load sch_netem", nr.ifname);
        }
        return netem_apply(s, id, &nr, (int) idx, &spec);
}
