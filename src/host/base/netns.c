/* netns.c: the file runner's private network namespace (see netns.h). */
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "env.h"

static char error[256] = "the file runner has no network namespace of its own";
static int host_fd = -1; /* the namespace the runner started in (the host's), or -1 */

static int loopback_up(void)
{
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
        if (r == 0) {
                ifr.ifr_flags |= IFF_UP;
                r = ioctl(fd, SIOCSIFFLAGS, &ifr);
        }
        r = r < 0 ? -errno : 0;
        (void) close(fd);
        return r;
}

/* The outermost dispatcher's host namespace ($PROVIUM_HOST_NETNS), else this runner's. */
static int real_host_fd(void)
{
        static int fd = -1;
        const char *path = env_get()->host_netns;

        if (fd < 0 && path)
                fd = open(path, O_RDONLY | O_CLOEXEC);
        return fd >= 0 ? fd : host_fd;
}

int netns_enter_private(void)
{
        /* Kept before leaving, so uplinks can reach back (see uplink.c). Close-on-exec: QEMU and
         * other children never hold it. */
        if (host_fd < 0)
                host_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        int r = unshare(CLONE_NEWNET) < 0 ? -errno : 0;
        if (r == 0)
                r = loopback_up();
        if (r < 0) {
                snprintf(error, sizeof error, "no private network namespace for this file (%s%s)",
                         strerror(-r),
                         r == -EPERM ? ": networks need root or CAP_SYS_ADMIN + CAP_NET_ADMIN"
                                     : "");
                return r;
        }
        error[0] = 0;
        (void) real_host_fd(); /* opened now, before image builds run in the thread pool */
        return 0;
}

int netns_host_env(char *buf, size_t n)
{
        const char *outer = env_get()->host_netns;
        int len = outer ? snprintf(buf, n, "PROVIUM_HOST_NETNS=%s", outer)
                        : snprintf(buf, n, "PROVIUM_HOST_NETNS=/proc/%ld/ns/net", (long) getpid());

        return len < 0 || (size_t) len >= n ? -ENAMETOOLONG : 0;
}

int netns_host_fd(void)
{
        return host_fd;
}

int netns_enter_host(void)
{
        int host = real_host_fd(), saved;

        if (host < 0)
                return -1;
        saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (saved < 0)
                return -1;
        if (setns(host, CLONE_NEWNET) < 0) {
                (void) close(saved);
                return -1;
        }
        return saved;
}

void netns_return(int saved)
{
        if (saved < 0)
                return;
        if (setns(saved, CLONE_NEWNET) < 0)
                abort(); /* staying in the host's namespace would put bridges there */
        (void) close(saved);
}

const char *netns_error(void)
{
        return error[0] ? error : NULL;
}
