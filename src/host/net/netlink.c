/* netlink.c: rtnetlink and nftables helpers for the network modules (see netlink.h). */
#include "netlink.h"

#include <errno.h>
#include <net/if.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/netem.h>
#include <stdbool.h>
#include <nftables/libnftables.h>
#include <stdio.h>

struct nl_sock *netlink_open(int *ret)
{
        struct nl_sock *sk = nl_socket_alloc();
        if (!sk) {
                *ret = -NLE_NOMEM;
                return NULL;
        }
        int r = nl_connect(sk, NETLINK_ROUTE);
        if (r < 0) {
                nl_socket_free(sk);
                *ret = r;
                return NULL;
        }
        *ret = 0;
        return sk;
}

const char *netlink_error(int r)
{
        return nl_geterror(r);
}

int netlink_link_delete(struct nl_sock *sk, const char *ifname)
{
        struct rtnl_link *link = rtnl_link_alloc();
        if (!link)
                return -NLE_NOMEM;
        rtnl_link_set_name(link, ifname);
        int r = rtnl_link_delete(sk, link);
        rtnl_link_put(link);
        return r;
}

int nft_apply(const char *cmds, char *err, size_t errlen)
{
        struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
        if (!nft) {
                snprintf(err, errlen, "nftables: out of memory");
                return -ENOMEM;
        }
        (void) nft_ctx_buffer_error(nft);
        int r = nft_run_cmd_from_buffer(nft, cmds);
        if (r != 0) {
                const char *msg = nft_ctx_get_error_buffer(nft);
                snprintf(err, errlen, "nftables: %s", msg && *msg ? msg : "failed");
        }
        nft_ctx_free(nft);
        return r != 0 ? -EIO : 0;
}

/* A netem qdisc on lo, added and deleted at once: whether this kernel has sch_netem. */
static bool probe_netem(void)
{
        int r;
        struct nl_sock *sk = netlink_open(&r);
        struct rtnl_qdisc *q = sk ? rtnl_qdisc_alloc() : NULL;
        int lo = (int) if_nametoindex("lo");
        bool has = false;
        if (q && lo > 0) {
                rtnl_tc_set_ifindex(TC_CAST(q), lo);
                rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
                rtnl_tc_set_handle(TC_CAST(q), TC_HANDLE(0x7e57, 0));
                if (rtnl_tc_set_kind(TC_CAST(q), "netem") >= 0) {
                        rtnl_netem_set_delay(q, 1);
                        has = rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_EXCL) >= 0;
                        if (has)
                                (void) rtnl_qdisc_delete(sk, q);
                }
        }
        if (q)
                rtnl_qdisc_put(q);
        if (sk)
                nl_socket_free(sk);
        return has;
}

bool netlink_has_netem(void)
{
        static int known = -1;
        if (known < 0)
                known = probe_netem();
        return known;
}
