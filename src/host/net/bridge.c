/* bridge.c: Linux bridges and their TAP ports in the file runner's namespace, over rtnetlink
 * (libnl-route), and their impairments as nftables rules (libnftables, bridge family).
 *
 * Each bridge has its own nftables table `bridge pv_<name>` with one forward chain. Every
 * change re-renders that table from the list of impairments in one atomic batch, so undoing
 * one never disturbs the others. ARP always passes: a one-way partition then stays one-way
 * for IP (the side that may still send can resolve the other's address).
 *
 * Bandwidth limits are tbf qdiscs on TAP ports: a port's egress is the traffic into its VM.
 *
 * Sections: netlink, TAPs, bridges, impairments, bandwidth.
 */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "events.h"
#include "netlink.h"
#include "netns.h"
#include "strfmt.h"

typedef struct Impairment {
        unsigned id;
        char *rules; /* nft rule lines for the forward chain */
        struct Impairment *next;
} Impairment;

struct Bridge {
        char *name; /* the user's name ("lan") */
        char ifname[IFNAMSIZ];
        int ifindex;
        char **taps;
        size_t ntaps;
        Impairment *impairments;
        unsigned next_id;
        bool gone;
};

/* ---- netlink ---- */

/* Sets ifname up, and when master_ifindex > 0 enslaves it to that bridge. */
static int link_up(struct nl_sock *sk, const char *ifname, int master_ifindex, int *ret_ifindex)
{
        struct rtnl_link *link = NULL, *change = rtnl_link_alloc();
        int r = change ? rtnl_link_get_kernel(sk, 0, ifname, &link) : -NLE_NOMEM;
        if (r >= 0) {
                rtnl_link_set_flags(change, IFF_UP);
                if (master_ifindex > 0)
                        rtnl_link_set_master(change, master_ifindex);
                r = rtnl_link_change(sk, link, change, 0);
                if (ret_ifindex)
                        *ret_ifindex = rtnl_link_get_ifindex(link);
        }
        if (link)
                rtnl_link_put(link);
        if (change)
                rtnl_link_put(change);
        return r;
}

static int add_address(struct nl_sock *sk, int ifindex, const char *cidr)
{
        struct nl_addr *local = NULL;
        struct rtnl_addr *a = rtnl_addr_alloc();
        int r = a ? nl_addr_parse(cidr, AF_INET, &local) : -NLE_NOMEM;
        if (r >= 0) {
                rtnl_addr_set_ifindex(a, ifindex);
                r = rtnl_addr_set_local(a, local);
        }
        if (r >= 0)
                r = rtnl_addr_add(sk, a, 0);
        if (local)
                nl_addr_put(local);
        if (a)
                rtnl_addr_put(a);
        return r;
}

/* ---- TAPs ---- */

/* A persistent TAP that QEMU opens by name later (-netdev tap,ifname=...); owned by this user,
 * so that QEMU, which runs without capabilities (vm_argv.c), may attach to it. */
static int tap_create(const char *ifname)
{
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
        int r = ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETOWNER, geteuid()) < 0 ||
                        ioctl(fd, TUNSETPERSIST, 1) < 0
                    ? -errno
                    : 0;
        (void) close(fd);
        return r;
}

/* ---- bridges ---- */

static void emit_bridge(const char *type, const Bridge *b, const char *what)
{
        EventBuilder ev;
        event_begin(&ev, type, 3);
        proto_kv_str(&ev.w, "bridge", b->name);
        proto_kv_str(&ev.w, "ifname", b->ifname);
        proto_kv_str(&ev.w, "what", what ? what : "");
        event_end(&ev);
}

int bridge_create(const char *name, const char *cidr, Bridge **ret, char *err, size_t errlen)
{
        const char *why = netns_error();
        if (why) {
                seterr(err, errlen, "bridge %s: %s", name, why);
                events_infra_error("netns", err);
                return -EPERM;
        }
        Bridge *b = calloc(1, sizeof *b);
        if (!b || !(b->name = strdup(name))) {
                free(b);
                seterr(err, errlen, "bridge %s: out of memory", name);
                return -ENOMEM;
        }
        snprintf(b->ifname, sizeof b->ifname, "br-%s", name);
        int r;
        struct nl_sock *sk = netlink_open(&r);
        struct rtnl_link *link = sk ? rtnl_link_bridge_alloc() : NULL;
        if (sk && !link)
                r = -NLE_NOMEM;
        if (link) {
                rtnl_link_set_name(link, b->ifname);
                r = rtnl_link_add(sk, link, NLM_F_CREATE | NLM_F_EXCL);
                rtnl_link_put(link);
        }
        if (r >= 0)
                r = link_up(sk, b->ifname, 0, &b->ifindex);
        if (r >= 0 && cidr)
                r = add_address(sk, b->ifindex, cidr);
        if (r < 0) {
                seterr(err, errlen, "bridge %s: creating %s: %s", name, b->ifname,
                       netlink_error(r));
                if (sk)
                        (void) netlink_link_delete(sk, b->ifname);
                free(b->name);
                free(b);
                b = NULL;
        }
        if (sk)
                nl_socket_free(sk);
        if (!b)
                return -EIO;
        emit_bridge("bridge.create", b, cidr);
        *ret = b;
        return 0;
}

const char *bridge_ifname(const Bridge *b)
{
        return b->ifname;
}

const char *bridge_name(const Bridge *b)
{
        return b->name;
}

bool bridge_gone(const Bridge *b)
{
        return b->gone;
}

int bridge_add_tap(Bridge *b, const char *tap, char *err, size_t errlen)
{
        if (b->gone) {
                seterr(err, errlen, "bridge %s: attach: the bridge is gone", b->name);
                return -ENODEV;
        }
        char **v = realloc(b->taps, (b->ntaps + 1) * sizeof *v);
        if (!v || !(v[b->ntaps] = strdup(tap))) {
                if (v)
                        b->taps = v;
                seterr(err, errlen, "bridge %s: out of memory", b->name);
                return -ENOMEM;
        }
        b->taps = v;
        int r = tap_create(tap);
        if (r < 0) {
                seterr(err, errlen, "bridge %s: creating TAP %s: %s", b->name, tap, strerror(-r));
                free(v[b->ntaps]);
                return r;
        }
        b->ntaps++;
        struct nl_sock *sk = netlink_open(&r);
        if (sk) {
                r = link_up(sk, tap, b->ifindex, NULL);
                nl_socket_free(sk);
                if (r < 0) {
                        seterr(err, errlen, "bridge %s: adding %s: %s", b->name, tap,
                               netlink_error(r));
                        return -EIO;
                }
        } else {
                seterr(err, errlen, "bridge %s: netlink: %s", b->name, netlink_error(r));
                return r;
        }
        emit_bridge("bridge.attach", b, tap);
        return 0;
}

/* The veth pair port (here) and peer (in netns_pid's namespace, with MAC mac). */
static int veth_create(struct nl_sock *sk, const char *port, int netns_pid, const char *peer,
                       const char *mac)
{
        struct rtnl_link *l = rtnl_link_veth_alloc();
        if (!l)
                return -NLE_NOMEM;
        struct rtnl_link *p = rtnl_link_veth_get_peer(l);
        struct nl_addr *addr = NULL;
        int r = nl_addr_parse(mac, AF_LLC, &addr);
        if (r >= 0) {
                rtnl_link_set_name(l, port);
                rtnl_link_set_name(p, peer);
                rtnl_link_set_addr(p, addr);
                rtnl_link_set_ns_pid(p, netns_pid);
                r = rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL);
        }
        if (addr)
                nl_addr_put(addr);
        rtnl_link_put(p);
        rtnl_link_veth_release(l);
        return r;
}

int bridge_veth_port(Bridge *b, const char *port, int netns_pid, const char *peer, const char *mac,
                     char *err, size_t errlen)
{
        if (b->gone) {
                seterr(err, errlen, "bridge %s: attach: the bridge is gone", b->name);
                return -ENODEV;
        }
        int r;
        struct nl_sock *sk = netlink_open(&r);
        if (!sk) {
                seterr(err, errlen, "bridge %s: netlink: %s", b->name, netlink_error(r));
                return -EIO;
        }
        const char *step = "removing its TAP";
        r = netlink_link_delete(sk, port);
        if (r >= 0 &&
            (step = "creating the veth", r = veth_create(sk, port, netns_pid, peer, mac)) >= 0)
                step = "adding it", r = link_up(sk, port, b->ifindex, NULL);
        nl_socket_free(sk);
        if (r < 0) {
                seterr(err, errlen, "bridge %s: attach: port %s: %s: %s", b->name, port, step,
                       netlink_error(r));
                return -EIO;
        }
        return 0;
}

/* ---- impairments ---- */

/* The bridge's whole table from its impairments, replacing the old one in one batch. */
static int render(Bridge *b, char *err, size_t errlen)
{
        size_t len = 256;
        for (Impairment *i = b->impairments; i; i = i->next)
                len += strlen(i->rules) + 1;
        char *cmds = malloc(len + 512);
        if (!cmds) {
                seterr(err, errlen, "out of memory");
                return -ENOMEM;
        }
        int n = snprintf(cmds, len + 512,
                         "table bridge pv_%s {}\n"
                         "delete table bridge pv_%s\n"
                         "table bridge pv_%s {\n"
                         "  chain forward {\n"
                         "    type filter hook forward priority 0; policy accept;\n"
                         "    ether type arp accept\n",
                         b->name, b->name, b->name);
        for (Impairment *i = b->impairments; i; i = i->next)
                n += snprintf(cmds + n, len + 512 - (size_t) n, "%s", i->rules);
        snprintf(cmds + n, len + 512 - (size_t) n, "  }\n}\n");
        int r = nft_apply(cmds, err, errlen);
        free(cmds);
        return r;
}

int bridge_impair(Bridge *b, const char *kind, const char *rules, unsigned *ret_id, char *err,
                  size_t errlen)
{
        if (b->gone) {
                seterr(err, errlen, "bridge %s: %s: the bridge is gone", b->name, kind);
                return -ENODEV;
        }
        Impairment *imp = calloc(1, sizeof *imp);
        if (!imp || !(imp->rules = strdup(rules))) {
                free(imp);
                seterr(err, errlen, "bridge %s: %s: out of memory", b->name, kind);
                return -ENOMEM;
        }
        imp->id = ++b->next_id;
        imp->next = b->impairments;
        b->impairments = imp;
        char why[1024];
        int r = render(b, why, sizeof why);
        if (r < 0) {
                b->impairments = imp->next;
                free(imp->rules);
                free(imp);
                seterr(err, errlen, "bridge %s: %s: %s", b->name, kind, why);
                return r;
        }
        emit_bridge("bridge.impair", b, kind);
        *ret_id = imp->id;
        return 0;
}

int bridge_unimpair(Bridge *b, unsigned id, char *err, size_t errlen)
{
        if (b->gone)
                return 0;
        bool all = id == 0;
        for (Impairment **pp = &b->impairments; *pp;) {
                Impairment *i = *pp;
                if (all || i->id == id) {
                        *pp = i->next;
                        free(i->rules);
                        free(i);
                } else {
                        pp = &i->next;
                }
        }
        char why[1024];
        int r = render(b, why, sizeof why);
        if (r < 0)
                seterr(err, errlen, "bridge %s: heal: %s", b->name, why);
        else
                emit_bridge("bridge.heal", b, all ? "all" : "one");
        return r;
}

/* ---- bandwidth ---- */

static int tap_ifindex(struct nl_sock *sk, const char *tap)
{
        struct rtnl_link *link = NULL;
        int r = rtnl_link_get_kernel(sk, 0, tap, &link);
        if (r < 0)
                return r;
        int i = rtnl_link_get_ifindex(link);
        rtnl_link_put(link);
        return i;
}

/* Replaces tap's root qdisc with tbf at rate bytes/s (0: deletes it). The bucket holds 10 ms
 * at that rate (at least 2 full frames), the queue 50 ms, like `tc ... tbf latency 50ms`. */
static int tap_rate(struct nl_sock *sk, const char *tap, uint64_t rate)
{
        int ifindex = tap_ifindex(sk, tap);
        if (ifindex < 0)
                return ifindex;
        struct rtnl_qdisc *q = rtnl_qdisc_alloc();
        if (!q)
                return -NLE_NOMEM;
        rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
        rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
        int r;
        if (rate == 0) {
                r = rtnl_qdisc_delete(sk, q);
                if (r == -NLE_OBJ_NOTFOUND || r == -NLE_NOADDR || r == -NLE_INVAL)
                        r = 0; /* nothing to delete */
        } else {
                uint32_t bucket = (uint32_t) (rate / 100 > 3028 ? rate / 100 : 3028);
                uint32_t limit = (uint32_t) (rate / 20 > bucket ? rate / 20 : bucket);
                r = rtnl_tc_set_kind(TC_CAST(q), "tbf");
                if (r >= 0) {
                        rtnl_qdisc_tbf_set_limit(q, (int) limit);
                        rtnl_qdisc_tbf_set_rate(q, (int) rate, (int) bucket, 0);
                }
                if (r >= 0)
                        r = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE);
        }
        rtnl_qdisc_put(q);
        return r;
}

int bridge_set_rate(Bridge *b, const char *tap, uint64_t rate, char *err, size_t errlen)
{
        if (b->gone) {
                seterr(err, errlen, "bridge %s: bandwidth_limit: the bridge is gone", b->name);
                return -ENODEV;
        }
        if (rate > INT32_MAX) {
                seterr(err, errlen, "bridge %s: bandwidth_limit: at most %d bytes/s", b->name,
                       INT32_MAX);
                return -ERANGE;
        }
        int r;
        struct nl_sock *sk = netlink_open(&r);
        if (!sk) {
                seterr(err, errlen, "bridge %s: netlink: %s", b->name, netlink_error(r));
                return r;
        }
        for (size_t i = 0; i < b->ntaps && r >= 0; i++)
                if (!tap || strcmp(tap, b->taps[i]) == 0)
                        if ((r = tap_rate(sk, b->taps[i], rate)) < 0)
                                seterr(err, errlen, "bridge %s: bandwidth_limit on %s: %s", b->name,
                                       b->taps[i], netlink_error(r));
        nl_socket_free(sk);
        if (r >= 0 && !rate) /* a limit set is the prelude's bridge.bandwidth, with its rate */
                emit_bridge("bridge.bandwidth_clear", b, tap);
        return r < 0 ? -EIO : 0;
}

void bridge_remove(Bridge *b)
{
        if (b->gone)
                return;
        int r;
        struct nl_sock *sk = netlink_open(&r);
        for (size_t i = 0; sk && i < b->ntaps; i++)
                (void) netlink_link_delete(sk, b->taps[i]);
        if (sk) {
                (void) netlink_link_delete(sk, b->ifname);
                nl_socket_free(sk);
        }
        if (b->impairments) {
                char cmd[128], why[256];
                snprintf(cmd, sizeof cmd, "delete table bridge pv_%s\n", b->name);
                (void) nft_apply(cmd, why, sizeof why);
        }
        b->gone = true;
        emit_bridge("bridge.remove", b, NULL);
}

Bridge *bridge_free(Bridge *b)
{
        if (!b)
                return NULL;
        for (Impairment *i = b->impairments, *next; i; i = next) {
                next = i->next;
                free(i->rules);
                free(i);
        }
        for (size_t i = 0; i < b->ntaps; i++)
                free(b->taps[i]);
        free(b->taps);
        free(b->name);
        free(b);
        return NULL;
}
