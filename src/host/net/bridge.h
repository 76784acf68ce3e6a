/* bridge.h: a Linux bridge with TAP ports in the file runner's private network namespace,
 * and impairments on it as nftables rules (see bridge.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Bridge Bridge;

/* Creates bridge "br-<name>" (name: 1-12 of a-z 0-9 _), up, with address cidr (may be NULL).
 * Returns 0 and *ret, or -errno with a message naming the bridge. */
int bridge_create(const char *name, const char *cidr, Bridge **ret, char *err, size_t errlen);
const char *bridge_name(const Bridge *b);
const char *bridge_ifname(const Bridge *b);
/* Creates persistent TAP `tap` (for QEMU's -netdev tap,ifname=) as a port of the bridge. */
int bridge_add_tap(Bridge *b, const char *tap, char *err, size_t errlen);
/* Makes port `port` (a TAP of bridge_add_tap) a veth instead, whose other end is `peer` with
 * MAC mac in the network namespace of process netns_pid: a local VM's card (--vmm local). The
 * port keeps its name, so impairments, rates and captures on it work as on a TAP. */
int bridge_veth_port(Bridge *b, const char *port, int netns_pid, const char *peer, const char *mac,
                     char *err, size_t errlen);
/* Adds an impairment: nft rule lines for the bridge's forward chain (e.g. `iifname "t1"
 * oifname "t2" drop`). *ret_id undoes it with bridge_unimpair (id 0: all of them). kind names
 * it in messages. */
int bridge_impair(Bridge *b, const char *kind, const char *rules, unsigned *ret_id, char *err,
                  size_t errlen);
int bridge_unimpair(Bridge *b, unsigned id, char *err, size_t errlen);
/* Caps the traffic leaving port tap (into its VM; NULL: every port of the bridge) at rate
 * bytes/s with a tbf qdisc; rate 0 removes the cap. */
int bridge_set_rate(Bridge *b, const char *tap, uint64_t rate, char *err, size_t errlen);
/* Deletes its TAPs, the bridge and its rules; later attaches and impairments fail with "the
 * bridge is gone". Links left at the end go with the runner's namespace anyway. */
void bridge_remove(Bridge *b);
bool bridge_gone(const Bridge *b);
/* Frees the handle (the links stay until removed or the namespace goes). Accepts NULL. */
Bridge *bridge_free(Bridge *b);
