/* rtnl.h: the rtnetlink requests of the netem op (ops_net.c, ops_ingress.c): a message built
 * in a fixed buffer, every attribute bounds-checked, and one request-ack exchange with the
 * kernel. */
#pragma once

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdbool.h>
#include <stddef.h>

#define RTNL_MSG_SIZE  1024 /* bytes of one request, attributes included */
#define RTNL_KMSG_SIZE 512  /* the kernel's extended-ack text */

typedef struct RtnlReq {
        union {
                struct nlmsghdr nh;
                char buf[RTNL_MSG_SIZE];
        };
        bool overflow; /* an attribute did not fit: rtnl_talk refuses to send */
} RtnlReq;

/* Starts a request of type (flags besides NLM_F_REQUEST | NLM_F_ACK) whose family header is
 * hdr_size bytes, zeroed; returns that header. */
void *rtnl_begin(RtnlReq *m, unsigned short type, unsigned short flags, size_t hdr_size);
/* Appends attribute type holding n bytes of p (none when p is NULL). Returns it, or NULL
 * (and marks m overflowed) when it does not fit. */
struct rtattr *rtnl_attr(RtnlReq *m, unsigned short type, const void *p, size_t n);
/* Ends attribute a (from rtnl_attr): everything appended since is nested in it. */
void rtnl_nest_end(RtnlReq *m, struct rtattr *a);
/* Sends m and waits for the kernel's ack. Returns 0 or -errno (-EMSGSIZE for an overflowed
 * m); the kernel's extended-ack text, if any, goes to kmsg (empty otherwise). */
int rtnl_talk(RtnlReq *m, char *kmsg, size_t kmsg_size);
