/* rtnl.c: rtnetlink requests built in a fixed buffer and sent one at a time (rtnl.h).
 *
 * Each request gets its own NETLINK_ROUTE socket, asks for an ack and for extended acks, and
 * waits at most RTNL_TIMEOUT seconds for the answer. What the kernel sends back is read within
 * the bounds of the datagram: a message's length, the ack's header and each extended-ack
 * attribute are checked before they are read.
 *
 * Sections: building, talking.
 */
#include "rtnl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "agent.h"

#define RTNL_TIMEOUT 5 /* seconds for the kernel's answer */

/* ---- building ---- */

void *rtnl_begin(RtnlReq *m, unsigned short type, unsigned short flags, size_t hdr_size)
{
        memset(m, 0, sizeof *m);
        m->nh.nlmsg_len = NLMSG_LENGTH(hdr_size);
        m->nh.nlmsg_type = type;
        m->nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        return NLMSG_DATA(&m->nh);
}

struct rtattr *rtnl_attr(RtnlReq *m, unsigned short type, const void *p, size_t n)
{
        size_t off = NLMSG_ALIGN(m->nh.nlmsg_len);
        if (m->overflow || off > sizeof m->buf || n > sizeof m->buf ||
            RTA_SPACE(n) > sizeof m->buf - off) {
                m->overflow = true;
                return NULL;
        }
        struct rtattr *a = (struct rtattr *) (m->buf + off);
        a->rta_type = type;
        a->rta_len = (unsigned short) RTA_LENGTH(n);
        if (p)
                memcpy(RTA_DATA(a), p, n);
        m->nh.nlmsg_len = (unsigned) (off + RTA_SPACE(n));
        return a;
}

void rtnl_nest_end(RtnlReq *m, struct rtattr *a)
{
        if (a)
                a->rta_len = (unsigned short) ((char *) &m->nh + m->nh.nlmsg_len - (char *) a);
}

/* ---- talking ---- */

/* The extended ack's text (NLMSGERR_ATTR_MSG) of error message h into kmsg, if it has one. */
static void ack_text(const struct nlmsghdr *h, char *kmsg, size_t kmsg_size)
{
        const struct nlmsgerr *e = NLMSG_DATA(h);
        if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
                return;
        size_t off = NLMSG_LENGTH(sizeof *e);
        if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
                if (e->msg.nlmsg_len < NLMSG_HDRLEN)
                        return;
                off += NLMSG_ALIGN(e->msg.nlmsg_len) - NLMSG_HDRLEN;
        }
        while (off <= h->nlmsg_len && h->nlmsg_len - off >= sizeof(struct nlattr)) {
                const struct nlattr *a = (const struct nlattr *) ((const char *) h + off);
                if (a->nla_len < NLA_HDRLEN || a->nla_len > h->nlmsg_len - off)
                        return;
                if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
                        size_t len = a->nla_len - NLA_HDRLEN;
                        const char *s = (const char *) a + NLA_HDRLEN;
                        (void) snprintf(kmsg, kmsg_size, "%.*s", (int) strnlen(s, len), s);
                        return;
                }
                off += NLA_ALIGN(a->nla_len);
        }
}

/* Looks through one datagram of n bytes for the ack of seq. Returns 1 (none there), 0 or
 * -errno (the ack's). */
static int find_ack(const void *buf, size_t n, unsigned seq, char *kmsg, size_t kmsg_size)
{
        for (const struct nlmsghdr *h = buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
                if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR)
                        continue;
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                        return -EBADMSG;
                const struct nlmsgerr *e = NLMSG_DATA(h);
                if (e->error == 0)
                        return 0;
                ack_text(h, kmsg, kmsg_size);
                return e->error < 0 && e->error > -4096 ? e->error : -EPROTO;
        }
        return 1;
}

int rtnl_talk(RtnlReq *m, char *kmsg, size_t kmsg_size)
{
        kmsg[0] = 0;
        if (m->overflow)
                return -EMSGSIZE;
        _cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        if (fd < 0)
                return -errno;
        int one = 1;
        /* both best effort: without extended acks, errors come without the kernel's text */
        (void) setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
        struct timeval tv = {.tv_sec = RTNL_TIMEOUT};
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
                return -errno;
        struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
        m->nh.nlmsg_seq = 1;
        if (sendto(fd, m->buf, m->nh.nlmsg_len, 0, (struct sockaddr *) &kernel, sizeof kernel) < 0)
                return -errno;
        union {
                char b[8192];
                struct nlmsghdr align;
        } buf;
        for (;;) {
                ssize_t n = recv(fd, buf.b, sizeof buf.b, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                int r = find_ack(&buf.align, (size_t) n, m->nh.nlmsg_seq, kmsg, kmsg_size);
                if (r <= 0)
                        return r;
        }
}
