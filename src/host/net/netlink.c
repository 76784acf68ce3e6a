/* netlink.c: rtnetlink and nftables helpers for the network modules (see netlink.h). */
#include "netlink.h"

#include <errno.h>
#include <netlink/route/link.h>
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
