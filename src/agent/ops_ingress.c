/* ops_ingress.c: netem on what a guest interface receives (the netem op's `ingress`), the
 * standard Linux way: netem is an egress qdisc, so what arrives is turned around through an IFB
 * device.
 *
 *   ip link add ifb-IF type ifb; ip link set ifb-IF up
 *   tc qdisc replace dev ifb-IF root netem ...
 *   tc qdisc add dev IF ingress
 *   tc filter add dev IF parent ffff: prio 1 handle 1 protocol all matchall \
 *           action mirred egress redirect dev ifb-IF
 *
 * each as one rtnetlink request (rtnl.c), in that order, so that nothing is redirected before
 * the IFB's netem is there. The IFB sends what it was given back into IF's receive path once
 * its netem lets it go. Clearing deletes IF's ingress qdisc (its filter goes with it), then the
 * IFB (its netem with it). The IFB is named "ifb-" and IF, cut to 15 bytes; that it exists is
 * what says the ingress side is set. ifb, sch_ingress, cls_matchall and act_mirred are shipped
 * as on-demand modules and loaded on first use (ifb with numifbs=0: no ifb0, ifb1 of its own).
 *
 * Sections: modules, the IFB, the ingress qdisc and its filter, set and clear.
 */
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#include "agent.h"
#include "netem.h"
#include "rtnl.h"

#define IFB_PREFIX     "ifb-"
#define INGRESS_HANDLE TC_H_MAKE(TC_H_INGRESS, 0) /* ffff: */
#define FILTER_PRIO    1u
#define FILTER_HANDLE  1u

/* ---- modules ---- */

/* Loads what the ingress side needs once. Returns 0 or -errno (*what: the module). */
static int ingress_modules(const char **what)
{
        static const char *const mods[][2] = {{"ifb", "load ifb"},
                                              {"sch_ingress", "load sch_ingress"},
                                              {"cls_matchall", "load cls_matchall"},
                                              {"act_mirred", "load act_mirred"}};
        static atomic_bool loaded; /* all are in: no need to look again */
        if (atomic_load(&loaded))
                return 0;
        bool all = true;
        for (size_t i = 0; i < sizeof mods / sizeof *mods; i++) {
                int r = modules_load_ondemand(mods[i][0]);
                /* ENOENT: not shipped; the kernel may have it built in, or autoload it */
                if (r < 0 && r != -ENOENT) {
                        *what = mods[i][1];
                        return r;
                }
                all = all && r == 0;
        }
        if (all)
                atomic_store(&loaded, true);
        return 0;
}

/* ---- the IFB ---- */

/* "ifb-" and ifname, cut to IFNAMSIZ - 1 bytes. */
static void ifb_name(const char *ifname, char ifb[IFNAMSIZ])
{
        size_t p = sizeof IFB_PREFIX - 1, n = strnlen(ifname, IFNAMSIZ - 1 - p);
        memcpy(ifb, IFB_PREFIX, p);
        memcpy(ifb + p, ifname, n);
        ifb[p + n] = 0;
}

/* An RTM_NEWLINK for ifb, set up; create: also makes it (kind "ifb"), failing if it exists. */
static int ifb_newlink(const char *ifb, bool create, char *kmsg)
{
        RtnlReq m;
        struct ifinfomsg *ifi =
            rtnl_begin(&m, RTM_NEWLINK, create ? NLM_F_CREATE | NLM_F_EXCL : 0, sizeof *ifi);
        ifi->ifi_family = AF_UNSPEC;
        ifi->ifi_flags = IFF_UP;
        ifi->ifi_change = IFF_UP;
        (void) rtnl_attr(&m, IFLA_IFNAME, ifb, strlen(ifb) + 1);
        if (create) {
                struct rtattr *info = rtnl_attr(&m, IFLA_LINKINFO, NULL, 0);
                (void) rtnl_attr(&m, IFLA_INFO_KIND, "ifb", sizeof "ifb");
                rtnl_nest_end(&m, info);
        }
        return rtnl_talk(&m, kmsg, RTNL_KMSG_SIZE);
}

/* Makes the IFB ifb, or finds it, and sets it up. *created: it was not there. */
static int ifb_up(const char *ifb, bool *created, char *kmsg)
{
        int r = ifb_newlink(ifb, true, kmsg);
        *created = r == 0;
        return r == -EEXIST ? ifb_newlink(ifb, false, kmsg) : r;
}

static int ifb_delete(int ifb_index, char *kmsg)
{
        RtnlReq m;
        struct ifinfomsg *ifi = rtnl_begin(&m, RTM_DELLINK, 0, sizeof *ifi);
        ifi->ifi_family = AF_UNSPEC;
        ifi->ifi_index = ifb_index;
        int r = rtnl_talk(&m, kmsg, RTNL_KMSG_SIZE);
        return r == -ENODEV ? 0 : r;
}

/* ---- the ingress qdisc and its filter ---- */

/* Adds IF's ingress qdisc (one already there is kept), or deletes it (none is not an error). */
static int ingress_qdisc(int ifindex, bool add, char *kmsg)
{
        RtnlReq m;
        struct tcmsg *tc =
            rtnl_begin(&m, add ? RTM_NEWQDISC : RTM_DELQDISC, add ? NLM_F_CREATE : 0, sizeof *tc);
        tc->tcm_family = AF_UNSPEC;
        tc->tcm_ifindex = ifindex;
        tc->tcm_parent = TC_H_INGRESS;
        if (add) {
                tc->tcm_handle = INGRESS_HANDLE;
                (void) rtnl_attr(&m, TCA_KIND, "ingress", sizeof "ingress");
        }
        int r = rtnl_talk(&m, kmsg, RTNL_KMSG_SIZE);
        /* ENOENT: no ingress qdisc (handle 0 asks for whichever is there, none: ENOENT) */
        return !add && r == -ENOENT ? 0 : r;
}

/* The redirecting filter's request of type (RTM_NEWTFILTER, RTM_DELTFILTER) on IF's ingress. */
static struct tcmsg *filter_begin(RtnlReq *m, unsigned short type, unsigned short flags,
                                  int ifindex)
{
        struct tcmsg *tc = rtnl_begin(m, type, flags, sizeof *tc);
        tc->tcm_family = AF_UNSPEC;
        tc->tcm_ifindex = ifindex;
        tc->tcm_parent = INGRESS_HANDLE;
        tc->tcm_handle = FILTER_HANDLE;
        tc->tcm_info = TC_H_MAKE(FILTER_PRIO << 16, htons(ETH_P_ALL));
        (void) rtnl_attr(m, TCA_KIND, "matchall", sizeof "matchall");
        return tc;
}

/* matchall, action mirred egress redirect to ifb_index (stolen: IF's stack never sees it). */
static int filter_add(int ifindex, int ifb_index, char *kmsg)
{
        RtnlReq m;
        (void) filter_begin(&m, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, ifindex);
        struct rtattr *opt = rtnl_attr(&m, TCA_OPTIONS, NULL, 0);
        struct rtattr *acts = rtnl_attr(&m, TCA_MATCHALL_ACT, NULL, 0);
        struct rtattr *act = rtnl_attr(&m, 1, NULL, 0); /* the first action of the list */
        (void) rtnl_attr(&m, TCA_ACT_KIND, "mirred", sizeof "mirred");
        struct rtattr *aopt = rtnl_attr(&m, TCA_ACT_OPTIONS, NULL, 0);
        struct tc_mirred parms = {
            .action = TC_ACT_STOLEN, .eaction = TCA_EGRESS_REDIR, .ifindex = (__u32) ifb_index};
        (void) rtnl_attr(&m, TCA_MIRRED_PARMS, &parms, sizeof parms);
        rtnl_nest_end(&m, aopt);
        rtnl_nest_end(&m, act);
        rtnl_nest_end(&m, acts);
        rtnl_nest_end(&m, opt);
        return rtnl_talk(&m, kmsg, RTNL_KMSG_SIZE);
}

static int filter_delete(int ifindex, char *kmsg)
{
        RtnlReq m;
        (void) filter_begin(&m, RTM_DELTFILTER, 0, ifindex);
        return rtnl_talk(&m, kmsg, RTNL_KMSG_SIZE);
}

/* Adds the filter to ifb_index. One already there redirects to the IFB unless the IFB was just
 * made (created: the one it pointed to is gone), when it is replaced. */
static int filter_ensure(int ifindex, int ifb_index, bool created, char *kmsg)
{
        int r = filter_add(ifindex, ifb_index, kmsg);
        if (r != -EEXIST)
                return r;
        if (!created)
                return 0;
        r = filter_delete(ifindex, kmsg);
        return r < 0 ? r : filter_add(ifindex, ifb_index, kmsg);
}

/* ---- set and clear ---- */

int ingress_clear(const char *ifname, int ifindex, const char **what, char *kmsg)
{
        char ifb[IFNAMSIZ];
        ifb_name(ifname, ifb);
        unsigned ifb_index = if_nametoindex(ifb);
        if (ifb_index == 0)
                return errno == ENODEV || errno == ENXIO ? 0 : -errno; /* nothing set */
        if (ifb_index > INT32_MAX)
                return *what = "find the IFB device", -ERANGE;
        *what = "delete the ingress qdisc";
        int r = ingress_qdisc(ifindex, false, kmsg);
        if (r < 0)
                return r;
        *what = "delete the IFB device";
        return ifb_delete((int) ifb_index, kmsg);
}

/* After ifb_up: the rest of ingress_set, in order. */
static int ingress_steps(const char *ifb, int ifindex, bool created, const NetemSpec *spec,
                         const char **what, char *kmsg)
{
        *what = "find the IFB device";
        unsigned ifb_index = if_nametoindex(ifb);
        if (ifb_index == 0)
                return -errno;
        if (ifb_index > INT32_MAX)
                return -ERANGE;
        *what = "replace the IFB device's root qdisc with netem";
        int r = netem_root_replace((int) ifb_index, spec, kmsg);
        if (r < 0)
                return r;
        *what = "add the ingress qdisc";
        if ((r = ingress_qdisc(ifindex, true, kmsg)) < 0)
                return r;
        *what = "add the filter redirecting to the IFB device";
        return filter_ensure(ifindex, (int) ifb_index, created, kmsg);
}

int ingress_set(const char *ifname, int ifindex, const NetemSpec *spec, const char **what,
                char *kmsg)
{
        int r = ingress_modules(what);
        if (r < 0)
                return r;
        char ifb[IFNAMSIZ];
        ifb_name(ifname, ifb);
        bool created = false;
        *what = "create the IFB device";
        if ((r = ifb_up(ifb, &created, kmsg)) < 0)
                return r;
        r = ingress_steps(ifb, ifindex, created, spec, what, kmsg);
        if (r < 0 && created) {
                /* what this call made goes: the ingress side is as before it, unset */
                char ignored[RTNL_KMSG_SIZE];
                const char *also = NULL;
                (void) ingress_clear(ifname, ifindex, &also, ignored);
        }
        return r;
}
