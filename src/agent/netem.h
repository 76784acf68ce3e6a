/* netem.h: what the netem op's two files share: ops_net.c (the op, the netem qdisc, egress)
 * and ops_ingress.c (ingress through an IFB device). */
#pragma once

#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <stdbool.h>
#include <stddef.h>

/* Bursty loss as the Gilbert model: TCA_NETEM_LOSS holding NETEM_LOSS_GE. */
typedef struct NetemGe {
        struct rtattr hdr;
        struct tc_netem_gemodel ge;
} NetemGe;

/* A netem qdisc's parameters, as its TCA_OPTIONS carry them. */
typedef struct NetemSpec {
        struct tc_netem_qopt q;
        struct tc_netem_corr corr;
        struct tc_netem_reorder reorder;
        struct tc_netem_corrupt corrupt;
        NetemGe ge;
        bool gilbert; /* ge is sent (loss with a correlation) */
} NetemSpec;

/* Makes netem with spec the root qdisc of ifindex, or changes it in place. Returns 0 or -errno,
 * the kernel's text in kmsg (RTNL_KMSG_SIZE bytes). */
int netem_root_replace(int ifindex, const NetemSpec *spec, char *kmsg);
/* Deletes the root qdisc of ifindex; none set (the default one) is not an error. */
int netem_root_delete(int ifindex, char *kmsg);

/* Netem with spec on what ifname (ifindex) receives: an IFB device "ifb-IFNAME" (at most 15
 * bytes) with spec as its root qdisc, an ingress qdisc on ifname and a matchall filter whose
 * mirred action redirects everything to the IFB's egress. A second call changes the netem in
 * place. On failure, *what says which step failed and what the call made is taken down.
 * Returns 0 or -errno (kmsg as above). */
int ingress_set(const char *ifname, int ifindex, const NetemSpec *spec, const char **what,
                char *kmsg);
/* Takes down what ingress_set made for ifname: its ingress qdisc, then the IFB. Nothing there
 * is not an error. Returns 0 or -errno (*what, kmsg as above). */
int ingress_clear(const char *ifname, int ifindex, const char **what, char *kmsg);
