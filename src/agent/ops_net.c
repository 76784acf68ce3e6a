/* ops_net.c: netem: delay and jitter on a guest interface's egress, through rtnetlink.
 *
 * The root qdisc of the interface is replaced by netem (RTM_NEWQDISC, NLM_F_CREATE |
 * NLM_F_REPLACE, like `tc qdisc replace dev IF root netem delay D J`); a second request changes
 * the netem in place. clear deletes the root qdisc (RTM_DELQDISC), which brings back the
 * interface's default one. sch_netem is shipped as an on-demand module and loaded on first use.
 *
 * Times go to the kernel in its packet scheduler ticks; the conversion is iproute2's
 * (tc_core.c): /proc/net/psched holds t2us, us2t and clock_res in hex, and
 * ticks = us * t2us / us2t * clock_res / 1e6 (t2us = us2t when clock_res is 1e9, a
 * compatibility hack of the kernel). On Linux >= 2.6.34: 1000, 64, 1000000: 15.625 ticks per
 * microsecond (64 ns ticks).
 *
 * Sections: ticks, netlink, op.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "agent.h"

#define NETEM_LIMIT    1000u                 /* packets queued, tc's default */
#define NETEM_TIMEOUT  5                     /* seconds for the kernel's answer */
#define NETEM_MAX_US   (60ull * 1000 * 1000) /* delay and jitter: at most a minute */
#define NETEM_MSG_SIZE 512

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

/* ---- netlink ---- */

typedef struct NlReq {
        struct nlmsghdr nh;
        struct tcmsg tc;
        char attrs[256];
} NlReq;

/* netem's TCA_OPTIONS: its struct, then nested attributes of their own (iproute2's layout). */
/* Bursty loss as the Gilbert model: TCA_NETEM_LOSS holding NETEM_LOSS_GE. */
typedef struct NetemGe {
        struct rtattr hdr;
        struct tc_netem_gemodel ge;
} NetemGe;

static void nl_add_netem_options(NlReq *m, const struct tc_netem_qopt *q,
                                 const struct tc_netem_corr *corr,
                                 const struct tc_netem_reorder *reorder,
                                 const struct tc_netem_corrupt *corrupt, const NetemGe *ge)
{
        struct rtattr *opt = (struct rtattr *) ((char *) m + NLMSG_ALIGN(m->nh.nlmsg_len));
        opt->rta_type = TCA_OPTIONS;
        char *p = (char *) RTA_DATA(opt);
        memcpy(p, q, sizeof *q);
        size_t len = RTA_ALIGN(sizeof *q);
        const struct {
                unsigned short type;
                const void *data;
                size_t n;
        } nested[] = {{TCA_NETEM_CORR, corr, sizeof *corr},
                      {TCA_NETEM_REORDER, reorder, sizeof *reorder},
                      {TCA_NETEM_CORRUPT, corrupt, sizeof *corrupt},
                      {TCA_NETEM_LOSS, ge, sizeof *ge}};
        for (size_t i = 0; i < sizeof nested / sizeof *nested; i++) {
                if (!nested[i].data)
                        continue;
                struct rtattr *a = (struct rtattr *) (p + len);
                a->rta_type = nested[i].type;
                a->rta_len = (unsigned short) RTA_LENGTH(nested[i].n);
                memcpy(RTA_DATA(a), nested[i].data, nested[i].n);
                len += RTA_ALIGN(a->rta_len);
        }
        opt->rta_len = (unsigned short) RTA_LENGTH(len);
        m->nh.nlmsg_len = NLMSG_ALIGN(m->nh.nlmsg_len) + RTA_ALIGN(opt->rta_len);
}

static void nl_add_attr(NlReq *m, unsigned short type, const void *p, size_t n)
{
        struct rtattr *a = (struct rtattr *) ((char *) m + NLMSG_ALIGN(m->nh.nlmsg_len));
        a->rta_type = type;
        a->rta_len = (unsigned short) RTA_LENGTH(n);
        memcpy(RTA_DATA(a), p, n);
        m->nh.nlmsg_len = NLMSG_ALIGN(m->nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Sends m and waits for the kernel's ack. Returns 0 or -errno; the kernel's extended ack
 * message, if any, goes to msg (empty otherwise). */
static int nl_talk(NlReq *m, char *msg, size_t msg_size)
{
        msg[0] = 0;
        _cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void) setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
        struct timeval tv = {.tv_sec = NETEM_TIMEOUT};
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
        m->nh.nlmsg_seq = 1;
        if (sendto(fd, m, m->nh.nlmsg_len, 0, (struct sockaddr *) &kernel, sizeof kernel) < 0)
                return -errno;
        union {
                char b[8192];
                struct nlmsghdr align;
        } buf;
        for (;;) {
                ssize_t n = recv(fd, buf.b, sizeof buf.b, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                size_t left = (size_t) n;
                for (struct nlmsghdr *h = &buf.align; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
                        if (h->nlmsg_seq != m->nh.nlmsg_seq || h->nlmsg_type != NLMSG_ERROR)
                                continue;
                        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                                return -EBADMSG;
                        const struct nlmsgerr *e = NLMSG_DATA(h);
                        if (e->error == 0)
                                return 0;
                        /* Extended ack: TLVs after the echoed request header. */
                        if (h->nlmsg_flags & NLM_F_ACK_TLVS) {
                                size_t off = NLMSG_LENGTH(sizeof *e);
                                if (!(h->nlmsg_flags & NLM_F_CAPPED))
                                        off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_HDRLEN;
                                while (off + sizeof(struct nlattr) <= h->nlmsg_len) {
                                        const struct nlattr *a =
                                            (const struct nlattr *) ((const char *) h + off);
                                        if (a->nla_len < NLA_HDRLEN ||
                                            a->nla_len > h->nlmsg_len - off)
                                                break;
                                        if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
                                                size_t len = a->nla_len - NLA_HDRLEN;
                                                const char *s = (const char *) a + NLA_HDRLEN;
                                                (void) snprintf(msg, msg_size, "%.*s",
                                                                (int) strnlen(s, len), s);
                                                break;
                                        }
                                        off += NLA_ALIGN(a->nla_len);
                                }
                        }
                        return e->error < 0 ? e->error : -EPROTO;
                }
        }
}

/* ---- op ---- */

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

static int netem_reply_err(Server *s, uint64_t id, int err, const char *what, const char *ifname,
                           const char *kmsg)
{
        if (kmsg[0])
                return server_reply_errno(s, id, err, "netem %s: %s (%s)", ifname, what, kmsg);
        return server_reply_errno(s, id, err, "netem %s: %s", ifname, what);
}

int net_netem(Server *s, uint64_t id, const msgpack_object *req)
{
        const char *name;
        size_t name_len;
        int r = proto_get_bytes(req, "ifname", &name, &name_len);
        if (r <= 0 || name_len == 0 || name_len >= IFNAMSIZ || memchr(name, 0, name_len) ||
            memchr(name, '/', name_len))
                return server_reply_field(s, id, "netem", "ifname", r <= 0 ? r : -EINVAL);
        char ifname[IFNAMSIZ];
        memcpy(ifname, name, name_len);
        ifname[name_len] = 0;

        bool clear = false;
        r = proto_get_bool(req, "clear", &clear);
        if (r < 0)
                return server_reply_field(s, id, "netem", "clear", r);
        uint64_t delay_us = 0, jitter_us = 0;
        r = get_us(req, "delay_us", &delay_us);
        if (r < 0 || (r == 0 && !clear))
                return server_reply_field(s, id, "netem", "delay_us", r);
        r = get_us(req, "jitter_us", &jitter_us);
        if (r < 0)
                return server_reply_field(s, id, "netem", "jitter_us", r);
        /* probabilities and correlations in parts per million, 0..1000000 */
        static const char *const ppm_fields[] = {
            "loss_ppm",    "loss_corr_ppm",    "duplicate_ppm", "duplicate_corr_ppm",
            "corrupt_ppm", "corrupt_corr_ppm", "reorder_ppm",   "reorder_corr_ppm"};
        uint32_t prob[8] = {0};
        for (size_t i = 0; i < 8; i++) {
                uint64_t v = 0;
                r = proto_get_uint(req, ppm_fields[i], &v);
                if (r < 0 || v > 1000000)
                        return server_reply_field(s, id, "netem", ppm_fields[i],
                                                  r < 0 ? r : -ERANGE);
                prob[i] = (uint32_t) ((double) v / 1e6 * (double) UINT32_MAX); /* tc's scale */
        }
        const msgpack_object *seed = proto_get(req, "seed");
        if (seed && seed->type != MSGPACK_OBJECT_NIL)
                return server_reply_errno(
                    s, id, EOPNOTSUPP, "netem %s: seed (the kernel's netem draws its own)", ifname);
        if (prob[6] && delay_us == 0)
                return server_reply_errno(
                    s, id, EINVAL,
                    "netem %s: reorder needs a delay (the frames not reordered wait it)", ifname);

        unsigned idx = if_nametoindex(ifname);
        if (idx == 0)
                return server_reply_errno(s, id, errno, "netem %s", ifname);

        NlReq m = {0};
        m.nh.nlmsg_len = NLMSG_LENGTH(sizeof m.tc);
        m.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
        m.tc.tcm_family = AF_UNSPEC;
        m.tc.tcm_ifindex = (int) idx;
        m.tc.tcm_parent = TC_H_ROOT;
        char kmsg[NETEM_MSG_SIZE];
        if (clear) {
                m.nh.nlmsg_type = RTM_DELQDISC;
                r = nl_talk(&m, kmsg, sizeof kmsg);
                /* ENOENT: the root qdisc is the default one (handle 0): nothing to clear. */
                if (r < 0 && r != -ENOENT)
                        return netem_reply_err(s, id, -r, "delete the root qdisc", ifname, kmsg);
                server_begin_ok(s, id, 0);
                return server_flush(s);
        }

        double ticks_per_us = 0;
        r = psched_ticks_per_us(&ticks_per_us);
        if (r < 0)
                return server_reply_errno(s, id, -r, "netem %s: read /proc/net/psched", ifname);
        int64_t lat = us_to_ticks(delay_us, ticks_per_us),
                jit = us_to_ticks(jitter_us, ticks_per_us);
        if (lat < 0 || jit < 0)
                return server_reply_errno(s, id, ERANGE,
                                          "netem %s: delay %" PRIu64 " us, jitter %" PRIu64 " us",
                                          ifname, delay_us, jitter_us);

        static atomic_bool loaded; /* sch_netem is in: no need to look again */
        if (!atomic_load(&loaded)) {
                r = modules_load_ondemand("sch_netem");
                /* ENOENT: not shipped; the kernel may have it built in, or autoload it */
                if (r < 0 && r != -ENOENT)
                        return server_reply_errno(s, id, -r, "netem %s: load sch_netem", ifname);
                if (r == 0)
                        atomic_store(&loaded, true);
        }

        struct tc_netem_qopt q = {.latency = (uint32_t) lat,
                                  .limit = NETEM_LIMIT,
                                  .jitter = (uint32_t) jit,
                                  .loss = prob[0],
                                  .duplicate = prob[2],
                                  .gap = prob[6] ? 1 : 0}; /* tc's: reordering without a gap */
        struct tc_netem_corr corr = {.dup_corr = prob[3]};
        /* Loss with a correlation is the Gilbert model, not netem's own loss correlation, which
         * neither keeps the loss rate nor makes bursts (docs/determinism.md): a good state that
         * loses nothing, a bad one that loses all, mean burst 1 / (1 - c) and loss L on the
         * whole: r = 1 - c, p = L r / (1 - L). */
        NetemGe ge = {.hdr = {.rta_len = (unsigned short) RTA_LENGTH(sizeof ge.ge),
                              .rta_type = NETEM_LOSS_GE}};
        bool gilbert = prob[1] > 0 && prob[0] > 0 && prob[0] < UINT32_MAX;
        if (gilbert) {
                double l = (double) prob[0] / UINT32_MAX, c = (double) prob[1] / UINT32_MAX;
                double r = 1.0 - c, p = l * r / (1.0 - l);
                ge.ge.p = (uint32_t) ((p > 1.0 ? 1.0 : p) * UINT32_MAX);
                ge.ge.r = (uint32_t) (r * UINT32_MAX);
                q.loss = 0;
        }
        struct tc_netem_reorder reorder = {.probability = prob[6], .correlation = prob[7]};
        struct tc_netem_corrupt corrupt = {.probability = prob[4], .correlation = prob[5]};
        m.nh.nlmsg_type = RTM_NEWQDISC;
        m.nh.nlmsg_flags |= NLM_F_CREATE | NLM_F_REPLACE;
        nl_add_attr(&m, TCA_KIND, "netem", sizeof "netem");
        nl_add_netem_options(&m, &q, &corr, &reorder, &corrupt, gilbert ? &ge : NULL);
        r = nl_talk(&m, kmsg, sizeof kmsg);
        if (r < 0)
                return netem_reply_err(s, id, -r, "replace the root qdisc with netem", ifname,
                                       kmsg);
        if (s->debug)
                agent_log("netem %s: delay %" PRIu64 " us (%" PRId64 " ticks), jitter %" PRIu64
                          " us (%" PRId64 " ticks)",
                          ifname, delay_us, lat, jitter_us, jit);
        server_begin_ok(s, id, 0);
        return server_flush(s);
}
