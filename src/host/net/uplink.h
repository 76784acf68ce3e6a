/* uplink.h: NAT from a bridge's guests to the host's network namespace through a veth pair
 * (see uplink.c). */
#pragma once

#include <stddef.h>

typedef struct Uplink Uplink;

/* Gives bridge bridge_ifname ("br-lan", in the runner's namespace) a way out to the namespace
 * the runner came from: a veth pair, "pvu<n>" in the runner's namespace (runner_ip, .1 of a /30
 * of 100.64.0.0/10) and "pvh<pid>_<n>" in the host's (host_ip, the .2), with the guests'
 * traffic masqueraded behind runner_ip. gateway is the bridge's own address ("10.77.1.1", or
 * with a prefix length, /24 by default): NAT is for that subnet. Nothing is routed beyond the
 * /30: a host-side server bound at host_ip is what guests can reach. Returns 0 and *ret, or
 * -errno with a message naming the bridge. */
int uplink_create(const char *bridge_ifname, const char *gateway, Uplink **ret, char *err,
                  size_t errlen);
/* Where a host-side server binds. */
const char *uplink_host_ip(const Uplink *u);
/* The guests' traffic comes from this address (what a host-side server sees). */
const char *uplink_runner_ip(const Uplink *u);
const char *uplink_gateway(const Uplink *u);
const char *uplink_host_ifname(const Uplink *u);
const char *uplink_runner_ifname(const Uplink *u);
/* "/proc/<runner pid>/fd/<n>": the host's namespace, for `nsenter --net=` in the runner's
 * children (valid while the runner lives). */
const char *uplink_host_netns(const Uplink *u);
/* Deletes the veth pair (both ends) and the uplink's NAT rule; idempotent. */
void uplink_remove(Uplink *u);
/* Removes it if not yet done and frees the handle. Accepts NULL; returns NULL. */
Uplink *uplink_free(Uplink *u);
