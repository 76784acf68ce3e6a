/* netns.h: each file runner's private network namespace, where its bridges and TAPs live. */
#pragma once

#include <stddef.h>

/* Moves the calling process (a file runner, before it starts threads) into a new network
 * namespace with its loopback up. Nothing it creates there is visible from the host's
 * namespace or another runner's, and all of it goes when the runner and its QEMUs exit, even
 * after a crash. Returns 0 or -errno; the reason is kept for netns_error(). */
int netns_enter_private(void);
/* NULL when the runner has its private namespace; else why not (for "bridge: ..." errors). */
const char *netns_error(void);
/* An fd (O_CLOEXEC, open for the runner's life) of the network namespace the runner came from,
 * opened just before netns_enter_private() left it; -1 if that failed or it was never called. */
int netns_host_fd(void);

/* "PROVIUM_HOST_NETNS=PATH", for the environment of the file runners a dispatcher starts:
 * the host's network namespace, which the runners leave and the processes their tests start
 * (a nested provium building an image) inherit, as PATH names it for as long as this
 * dispatcher lives: this process's own namespace, or the one an outer dispatcher named (its
 * word stands: that one is the real host's). Returns 0 or -ENAMETOOLONG. */
int netns_host_env(char *buf, size_t n);

/* Moves the calling thread into the host's namespace ($PROVIUM_HOST_NETNS from the
 * dispatcher, else netns_host_fd), so that the children it
 * starts reach the network: image builds download packages. Returns the fd to hand to
 * netns_return() afterwards, or -1 when the thread stays where it is (no host namespace known,
 * or it cannot be entered: the child then fails with a network error of its own). */
int netns_enter_host(void);
void netns_return(int saved);
