/* netlink.h: rtnetlink sockets, link deletion and nftables batches, shared by bridge.c and
 * uplink.c. Netlink calls return libnl's codes (negative NLE_*; netlink_error names them). */
#pragma once

#include <netlink/netlink.h>
#include <stdbool.h>
#include <stddef.h>

/* A NETLINK_ROUTE socket in the calling thread's namespace, or NULL with *ret set. */
struct nl_sock *netlink_open(int *ret);
/* What a libnl code means. */
const char *netlink_error(int r);
/* Deletes link ifname (a veth's peer goes with it). */
int netlink_link_delete(struct nl_sock *sk, const char *ifname);
/* Whether the kernel has sch_netem (probed once, on lo of this network namespace): a local
 * VM's add_latency is netem in its namespace on the host's kernel. */
bool netlink_has_netem(void);
/* Runs an nftables batch (nft syntax) atomically. Returns 0, or -errno with
 * "nftables: <its message>" in err. */
int nft_apply(const char *cmds, char *err, size_t errlen);
