/* fdio.c: small fd helpers (see fdio.h). */
#include "fdio.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

int fd_write_all(int fd, const void *buf, size_t n)
{
        const uint8_t *p = buf;
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                                (void) poll(&pfd, 1, -1);
                                continue;
                        }
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int fd_write2_all(int fd, const void *a, size_t na, const void *b, size_t nb)
{
        struct iovec iov[2] = {{(void *) a, na}, {(void *) b, nb}};
        ssize_t k;
        while ((k = writev(fd, iov, 2)) < 0 && errno == EINTR)
                ;
        if (k < 0 && errno != EAGAIN)
                return -errno;
        size_t done = k < 0 ? 0 : (size_t) k;
        if (done < na) /* the rest the slow way */
                return fd_write_all(fd, (const uint8_t *) a + done, na - done)
                           ?: fd_write_all(fd, b, nb);
        done -= na;
        return done < nb ? fd_write_all(fd, (const uint8_t *) b + done, nb - done) : 0;
}
