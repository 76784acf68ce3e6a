/* uplink.c: a bridge's way out to the host's network namespace (the one the file runner came
 * from; see netns.h), through a veth pair with NAT.
 *
 * Layout, for uplink n of runner pid P:
 *
 *   guests 10.77.<b>.x ── br-<name> (10.77.<b>.1) ── pvu<n> 100.64.s.1/30 │ pvhP_n 100.64.s.2/30
 *                        runner's namespace: ip_forward=1, masquerade out     │ host's namespace
 *                        of pvu<n>                                            │
 *
 * The pair is created in one request with its host end already in the host's namespace, so
 * the name "pvhP_n" (unique there: P is the runner's pid) either exists complete or not at all.
 * The /30 is derived from the pid and skips subnets overlapping any IPv4 address of the host's
 * namespace. Neither end gets IPv6 addresses (addr_gen_mode none), and no route is added
 * anywhere besides the kernel's own for each end's /30: the runner's namespace has no default
 * route, so guests reach the host end's address and nothing else.
 *
 * Deleting pvu<n> deletes its peer; a crashed runner's namespace takes pvu<n>, hence the pair,
 * with it. The NAT table `ip pv_nat` is re-rendered from the live uplinks on every change.
 * Its forward chain keeps enabling ip_forward from opening anything else: routed traffic of an
 * uplinked bridge goes out only through its own uplink, and only replies come back in.
 *
 * Talking netlink in the host's namespace: the calling thread enters it (setns), opens a
 * netlink socket, and returns at once; the socket stays bound to the namespace it was made in.
 *
 * Sections: netlink, host namespace, subnets, nftables, uplinks.
 */
#include "uplink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/link/veth.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"
#include "netlink.h"
#include "netns.h"
#include "strfmt.h"

struct Uplink {
        char bridge[IFNAMSIZ];    /* "br-lan" */
        char runner_if[IFNAMSIZ]; /* "pvu<n>" */
        char host_if[IFNAMSIZ];   /* "pvh<pid>_<n>" */
        char gateway[INET_ADDRSTRLEN];
        char subnet[32]; /* the bridge's, "10.77.1.0/24" */
        char host_ip[INET_ADDRSTRLEN];
        char runner_ip[INET_ADDRSTRLEN];
        char netns_path[64];
        bool removed;
        struct Uplink *next;
};

static Uplink *live;       /* the uplinks not removed yet, for the nftables table */
static unsigned counter;   /* n in the names */
static bool forwarding_on; /* we set ip_forward: reset when the last uplink goes */

#define CGNAT_BASE 0x64400000u /* 100.64.0.0/10 */
#define SLOTS      (1u << 20)  /* its /30s */

/* "br-lan" -> "lan", as the other bridge messages and events name it. */
static const char *bridge_name_of(const char *ifname)
{
        return strncmp(ifname, "br-", 3) == 0 ? ifname + 3 : ifname;
}

/* ---- netlink ---- */

/* No IPv6 addresses on ifname (before it is up), then its IPv4 address, then up. */
static int link_setup(struct nl_sock *sk, const char *ifname, const char *cidr)
{
        struct rtnl_link *link = NULL, *change = rtnl_link_alloc();
        struct rtnl_addr *a = rtnl_addr_alloc();
        struct nl_addr *local = NULL;
        int r = change && a ? rtnl_link_get_kernel(sk, 0, ifname, &link) : -NLE_NOMEM;
        if (r >= 0)
                r = rtnl_link_inet6_set_addr_gen_mode(change, IN6_ADDR_GEN_MODE_NONE);
        if (r >= 0)
                r = rtnl_link_change(sk, link, change, 0);
        if (r >= 0)
                r = nl_addr_parse(cidr, AF_INET, &local);
        if (r >= 0) {
                rtnl_addr_set_ifindex(a, rtnl_link_get_ifindex(link));
                r = rtnl_addr_set_local(a, local);
        }
        if (r >= 0)
                r = rtnl_addr_add(sk, a, 0);
        if (r >= 0) {
                rtnl_link_put(change);
                change = rtnl_link_alloc();
                r = change ? 0 : -NLE_NOMEM;
        }
        if (r >= 0) {
                rtnl_link_set_flags(change, IFF_UP);
                r = rtnl_link_change(sk, link, change, 0);
        }
        if (local)
                nl_addr_put(local);
        if (a)
                rtnl_addr_put(a);
        if (link)
                rtnl_link_put(link);
        if (change)
                rtnl_link_put(change);
        return r;
}

/* The pair in one request: runner_if here, host_if created directly in the host's namespace. */
static int veth_add(struct nl_sock *sk, const Uplink *u, int host_fd)
{
        struct rtnl_link *veth = rtnl_link_veth_alloc();
        if (!veth)
                return -NLE_NOMEM;
        struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
        rtnl_link_set_name(veth, u->runner_if);
        rtnl_link_set_name(peer, u->host_if);
        rtnl_link_set_ns_fd(peer, host_fd);
        int r = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
        rtnl_link_put(peer);
        rtnl_link_veth_release(veth);
        return r;
}

/* ---- host namespace ---- */

/* A netlink socket in the host's namespace: the calling thread goes there just long enough to
 * open it. Returns NULL with *ret a libnl error, or -errno through why. */
static struct nl_sock *host_nl_open(int *ret, char *why, size_t whylen)
{
        int host = netns_host_fd();
        if (host < 0) {
                seterr(why, whylen, "the host's namespace was not kept when the runner started");
                *ret = -NLE_FAILURE;
                return NULL;
        }
        int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0) {
                seterr(why, whylen, "/proc/thread-self/ns/net: %s", strerror(errno));
                *ret = -NLE_FAILURE;
                return NULL;
        }
        struct nl_sock *sk = NULL;
        if (setns(host, CLONE_NEWNET) < 0) {
                seterr(why, whylen, "entering the host's namespace: %s", strerror(errno));
                *ret = -NLE_FAILURE;
        } else {
                sk = netlink_open(ret);
                if (!sk)
                        seterr(why, whylen, "netlink in the host's namespace: %s",
                               nl_geterror(*ret));
                if (setns(self, CLONE_NEWNET) < 0) {
                        /* Carrying on would build this file's networks in the host's namespace. */
                        fprintf(stderr,
                                "provium: cannot return to the file's network namespace: %s\n",
                                strerror(errno));
                        abort();
                }
        }
        (void) close(self);
        return sk;
}

/* ---- subnets ---- */

static bool overlaps_host_address(struct nl_cache *addrs, uint32_t net)
{
        for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
                struct rtnl_addr *a = (struct rtnl_addr *) o;
                struct nl_addr *local = rtnl_addr_get_local(a);
                if (rtnl_addr_get_family(a) != AF_INET || !local || nl_addr_get_len(local) != 4)
                        continue;
                uint32_t v;
                memcpy(&v, nl_addr_get_binary_addr(local), 4);
                v = ntohl(v);
                int plen = rtnl_addr_get_prefixlen(a);
                plen = plen > 30 ? 30 : plen < 0 ? 0 : plen;
                uint32_t mask = plen ? ~0u << (32 - plen) : 0;
                if ((v & mask) == (net & mask))
                        return true;
        }
        return false;
}

/* A /30 of 100.64.0.0/10 for uplink n of this runner: the pid picks the start, so runners
 * running at once start far apart; any /30 overlapping a host address is skipped. */
static int pick_subnet(struct nl_sock *host, unsigned n, uint32_t *ret_net)
{
        struct nl_cache *addrs = NULL;
        int r = rtnl_addr_alloc_cache(host, &addrs);
        if (r < 0)
                return r;
        uint32_t start = ((uint32_t) getpid() & 0xffffu) << 4 | (n & 0xfu);
        r = -NLE_EXIST;
        for (uint32_t k = 0; k < 4096; k++) {
                uint32_t slot = (start + k * 40503u) % SLOTS; /* odd step: every slot in turn */
                uint32_t net = CGNAT_BASE | slot << 2;
                if (!overlaps_host_address(addrs, net)) {
                        *ret_net = net;
                        r = 0;
                        break;
                }
        }
        nl_cache_free(addrs);
        return r;
}

static void ip_string(uint32_t host_order, char *buf)
{
        struct in_addr a = {.s_addr = htonl(host_order)};
        inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

/* "10.77.1.1" or "10.77.1.1/24" -> the subnet "10.77.1.0/24" and the address alone. */
static bool parse_gateway(const char *gateway, char *addr, char *subnet, size_t subnetlen)
{
        char buf[64];
        snprintf(buf, sizeof buf, "%s", gateway);
        int plen = 24;
        char *slash = strchr(buf, '/');
        if (slash) {
                char *end;
                long v = strtol(slash + 1, &end, 10);
                if (end == slash + 1 || *end || v < 1 || v > 30)
                        return false;
                plen = (int) v;
                *slash = 0;
        }
        struct in_addr a;
        if (inet_pton(AF_INET, buf, &a) != 1)
                return false;
        inet_ntop(AF_INET, &a, addr, INET_ADDRSTRLEN);
        uint32_t v = ntohl(a.s_addr) & (~0u << (32 - plen));
        char net[INET_ADDRSTRLEN];
        ip_string(v, net);
        snprintf(subnet, subnetlen, "%s/%d", net, plen);
        return true;
}

/* ---- nftables ---- */

/* Table `ip pv_nat` from the live uplinks, replacing the old one in one batch (deleting it when
 * none is left). */
static int render(char *err, size_t errlen)
{
        size_t cap = 1024;
        for (Uplink *u = live; u; u = u->next)
                cap += 512;
        char *cmds = malloc(cap);
        if (!cmds) {
                seterr(err, errlen, "out of memory");
                return -ENOMEM;
        }
        size_t n = (size_t) snprintf(cmds, cap, "table ip pv_nat {}\ndelete table ip pv_nat\n");
        if (live) {
                n += (size_t) snprintf(
                    cmds + n, cap - n,
                    "table ip pv_nat {\n"
                    "  chain post {\n"
                    "    type nat hook postrouting priority 100; policy accept;\n");
                for (Uplink *u = live; u; u = u->next)
                        n += (size_t) snprintf(cmds + n, cap - n,
                                               "    ip saddr %s oifname \"%s\" masquerade\n",
                                               u->subnet, u->runner_if);
                n += (size_t) snprintf(cmds + n, cap - n,
                                       "  }\n"
                                       "  chain forward {\n"
                                       "    type filter hook forward priority 0; policy accept;\n");
                for (Uplink *u = live; u; u = u->next)
                        n += (size_t) snprintf(
                            cmds + n, cap - n,
                            "    iifname \"%s\" oifname != { \"%s\", \"%s\" } drop\n"
                            "    iifname \"%s\" oifname != \"%s\" drop\n"
                            "    iifname \"%s\" ct state != { established, related } drop\n",
                            u->bridge, u->bridge, u->runner_if, u->runner_if, u->bridge,
                            u->runner_if);
                snprintf(cmds + n, cap - n, "  }\n}\n");
        }
        int r = nft_apply(cmds, err, errlen);
        free(cmds);
        return r;
}

/* ---- uplinks ---- */

/* ip_forward of the runner's namespace (/proc/sys/net is the calling thread's namespace's). */
static int set_forwarding(bool on)
{
        int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = write(fd, on ? "1\n" : "0\n", 2) == 2 ? 0 : -errno;
        (void) close(fd);
        return r;
}

static void emit_uplink(const Uplink *u)
{
        EventBuilder ev;
        event_begin(&ev, "bridge.uplink", 4);
        proto_kv_str(&ev.w, "bridge", bridge_name_of(u->bridge));
        proto_kv_str(&ev.w, "host_ip", u->host_ip);
        proto_kv_str(&ev.w, "runner_ip", u->runner_ip);
        proto_kv_str(&ev.w, "host_ifname", u->host_if);
        event_end(&ev);
}

/* Names for uplink n; false when the host end's name would not fit. */
static bool name_pair(Uplink *u, unsigned n)
{
        snprintf(u->runner_if, sizeof u->runner_if, "pvu%u", n);
        int len = snprintf(u->host_if, sizeof u->host_if, "pvh%ld_%u", (long) getpid(), n);
        return len > 0 && (size_t) len < sizeof u->host_if;
}

int uplink_create(const char *bridge_ifname, const char *gateway, Uplink **ret, char *err,
                  size_t errlen)
{
        const char *name = bridge_name_of(bridge_ifname);
        const char *why_not = netns_error();
        if (why_not) {
                seterr(err, errlen, "bridge %s: uplink: %s", name, why_not);
                return -EPERM;
        }
        if (strlen(bridge_ifname) >= IFNAMSIZ || !if_nametoindex(bridge_ifname)) {
                seterr(err, errlen, "bridge %s: uplink: no interface %s", name, bridge_ifname);
                return -ENODEV;
        }
        Uplink *u = calloc(1, sizeof *u);
        if (!u) {
                seterr(err, errlen, "bridge %s: uplink: out of memory", name);
                return -ENOMEM;
        }
        snprintf(u->bridge, sizeof u->bridge, "%s", bridge_ifname);
        if (!parse_gateway(gateway, u->gateway, u->subnet, sizeof u->subnet)) {
                seterr(err, errlen, "bridge %s: uplink: bad gateway address %s", name, gateway);
                free(u);
                return -EINVAL;
        }
        snprintf(u->netns_path, sizeof u->netns_path, "/proc/%ld/fd/%d", (long) getpid(),
                 netns_host_fd());

        char why[512] = "";
        int r;
        bool created = false;
        struct nl_sock *sk = netlink_open(&r);
        struct nl_sock *host = sk ? host_nl_open(&r, why, sizeof why) : NULL;
        if (!sk)
                seterr(why, sizeof why, "netlink: %s", nl_geterror(r));
        /* The pair: a name taken (a namespace of a dead runner with our pid not yet cleaned
         * up) moves on to the next n. */
        for (int attempt = 0; host && attempt < 8; attempt++) {
                unsigned n = ++counter;
                uint32_t net = 0;
                if (!name_pair(u, n)) {
                        seterr(why, sizeof why, "too many uplinks in this file");
                        r = -NLE_RANGE;
                        break;
                }
                r = pick_subnet(host, n, &net);
                if (r < 0) {
                        if (r == -NLE_EXIST)
                                seterr(why, sizeof why,
                                       "the /30s tried in 100.64.0.0/10 all overlap addresses "
                                       "of the host's namespace");
                        else
                                seterr(why, sizeof why, "listing the host's addresses: %s",
                                       nl_geterror(r));
                        break;
                }
                ip_string(net | 1, u->runner_ip);
                ip_string(net | 2, u->host_ip);
                r = veth_add(sk, u, netns_host_fd());
                if (r >= 0) {
                        created = true;
                        break;
                }
                seterr(why, sizeof why, "creating veth %s/%s: %s", u->runner_if, u->host_if,
                       nl_geterror(r));
                if (r != -NLE_EXIST)
                        break;
        }
        if (created) {
                char cidr[INET_ADDRSTRLEN + 4];
                snprintf(cidr, sizeof cidr, "%s/30", u->host_ip);
                r = link_setup(host, u->host_if, cidr);
                if (r < 0)
                        seterr(why, sizeof why, "host end %s (%s): %s", u->host_if, cidr,
                               nl_geterror(r));
                if (r >= 0) {
                        snprintf(cidr, sizeof cidr, "%s/30", u->runner_ip);
                        r = link_setup(sk, u->runner_if, cidr);
                        if (r < 0)
                                seterr(why, sizeof why, "runner end %s (%s): %s", u->runner_if,
                                       cidr, nl_geterror(r));
                }
        }
        if (created && r >= 0 && !forwarding_on) {
                int e = set_forwarding(true);
                if (e < 0) {
                        seterr(why, sizeof why, "enabling ip_forward: %s", strerror(-e));
                        r = -NLE_FAILURE;
                } else {
                        forwarding_on = true;
                }
        }
        if (created && r >= 0) {
                u->next = live;
                live = u;
                if (render(why, sizeof why) < 0) {
                        live = u->next;
                        r = -NLE_FAILURE;
                }
        }
        if (created && r < 0)
                (void) netlink_link_delete(sk, u->runner_if); /* takes the host end with it */
        if (host)
                nl_socket_free(host);
        if (sk)
                nl_socket_free(sk);
        if (!created || r < 0) {
                if (forwarding_on && !live) {
                        (void) set_forwarding(false);
                        forwarding_on = false;
                }
                seterr(err, errlen, "bridge %s: uplink: %s", name, why);
                free(u);
                return -EIO;
        }
        emit_uplink(u);
        *ret = u;
        return 0;
}

const char *uplink_host_ip(const Uplink *u)
{
        return u->host_ip;
}

const char *uplink_runner_ip(const Uplink *u)
{
        return u->runner_ip;
}

const char *uplink_gateway(const Uplink *u)
{
        return u->gateway;
}

const char *uplink_host_ifname(const Uplink *u)
{
        return u->host_if;
}

const char *uplink_runner_ifname(const Uplink *u)
{
        return u->runner_if;
}

const char *uplink_host_netns(const Uplink *u)
{
        return u->netns_path;
}

void uplink_remove(Uplink *u)
{
        if (u->removed)
                return;
        u->removed = true;
        for (Uplink **pp = &live; *pp; pp = &(*pp)->next) {
                if (*pp == u) {
                        *pp = u->next;
                        break;
                }
        }
        u->next = NULL;
        int r;
        struct nl_sock *sk = netlink_open(&r);
        if (sk) {
                (void) netlink_link_delete(sk, u->runner_if); /* the peer goes with it */
                nl_socket_free(sk);
        }
        char why[512];
        (void) render(why, sizeof why);
        if (!live && forwarding_on) {
                (void) set_forwarding(false);
                forwarding_on = false;
        }
}

Uplink *uplink_free(Uplink *u)
{
        if (!u)
                return NULL;
        uplink_remove(u);
        free(u);
        return NULL;
}
