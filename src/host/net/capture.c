/* capture.c: libpcap live capture on the libuv loop (see capture.h).
 *
 * Sections: open, reading, close, summaries (a small decoder for one-line descriptions).
 */
#include "capture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pcap/pcap.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "events.h"

#define CAPTURE_SNAPLEN   65535
#define ADDR_MAX          (INET6_ADDRSTRLEN + 2) /* room for "[v6]" */
#define CAPTURE_MAX_BATCH 1024 /* packets per wakeup, so that a flood cannot starve the loop */

struct Capture {
        uv_poll_t poll; /* first: the close callback gets the Capture */
        pcap_t *pcap;
        pcap_dumper_t *dumper;
        bool nano; /* pcap's timestamps are in nanoseconds */
        int linktype;
        CapturePacketFn cb;
        CaptureEndFn on_end;
        void *data;
        char *ifname, *filter, *path;
        uint64_t packets, bytes;
        bool closing;
        bool failed;
};

static void capture_free(Capture *c)
{
        if (c->pcap)
                pcap_close(c->pcap);
        free(c->ifname);
        free(c->filter);
        free(c->path);
        free(c);
}

/* ---- open ---- */

static void emit_start(const Capture *c)
{
        EventBuilder ev;
        event_begin(&ev, "capture.start", 3);
        proto_kv_str(&ev.w, "ifname", c->ifname);
        proto_kv_str(&ev.w, "filter", c->filter ? c->filter : "");
        proto_kv_str(&ev.w, "path", c->path);
        event_end(&ev);
}

/* The message for a failed pcap_activate; pcap's own text when it has one. */
static void activate_error(pcap_t *p, int r, const char *ifname, char *err, size_t errlen)
{
        const char *why = pcap_geterr(p);
        const char *what;
        switch (r) {
        case PCAP_ERROR_NO_SUCH_DEVICE:
                what = "no such interface";
                break;
        case PCAP_ERROR_PERM_DENIED:
                what = "permission denied (capturing needs root or CAP_NET_RAW)";
                break;
        case PCAP_ERROR_IFACE_NOT_UP:
                what = "the interface is down";
                break;
        default:
                what = pcap_statustostr(r);
                break;
        }
        if (why && *why)
                snprintf(err, errlen, "capture on %s: %s (%s)", ifname, what, why);
        else
                snprintf(err, errlen, "capture on %s: %s", ifname, what);
}

static void on_readable(uv_poll_t *h, int status, int events);

Capture *capture_open(uv_loop_t *loop, const char *ifname, const char *bpf_filter,
                      const char *pcap_path, CapturePacketFn cb, void *data, char *err,
                      size_t errlen)
{
        char pcap_err[PCAP_ERRBUF_SIZE] = "";
        if (!loop || !ifname || !*ifname || !pcap_path || !*pcap_path || !cb) {
                snprintf(err, errlen,
                         "capture: an interface name, a pcap path and a callback "
                         "are required");
                return NULL;
        }
        if (bpf_filter && !*bpf_filter)
                bpf_filter = NULL;
        Capture *c = calloc(1, sizeof *c);
        if (!c || !(c->ifname = strdup(ifname)) || !(c->path = strdup(pcap_path)) ||
            (bpf_filter && !(c->filter = strdup(bpf_filter)))) {
                snprintf(err, errlen, "capture on %s: out of memory", ifname);
                goto fail;
        }
        c->cb = cb;
        c->data = data;
        c->pcap = pcap_create(ifname, pcap_err);
        if (!c->pcap) {
                snprintf(err, errlen, "capture on %s: %s", ifname, pcap_err);
                goto fail;
        }
        (void) pcap_set_snaplen(c->pcap, CAPTURE_SNAPLEN);
        (void) pcap_set_promisc(c->pcap, 1);
        (void) pcap_set_immediate_mode(c->pcap, 1);
        (void) pcap_set_tstamp_precision(c->pcap, PCAP_TSTAMP_PRECISION_NANO);
        int r = pcap_activate(c->pcap);
        if (r < 0) {
                activate_error(c->pcap, r, ifname, err, errlen);
                goto fail;
        }
        c->nano = pcap_get_tstamp_precision(c->pcap) == PCAP_TSTAMP_PRECISION_NANO;
        c->linktype = pcap_datalink(c->pcap);
        if (c->filter) {
                struct bpf_program prog;
                if (pcap_compile(c->pcap, &prog, c->filter, 1, PCAP_NETMASK_UNKNOWN) < 0) {
                        snprintf(err, errlen, "capture on %s: bad filter \"%s\": %s", ifname,
                                 c->filter, pcap_geterr(c->pcap));
                        goto fail;
                }
                r = pcap_setfilter(c->pcap, &prog);
                pcap_freecode(&prog);
                if (r < 0) {
                        snprintf(err, errlen, "capture on %s: cannot set filter \"%s\": %s", ifname,
                                 c->filter, pcap_geterr(c->pcap));
                        goto fail;
                }
        }
        if (pcap_setnonblock(c->pcap, 1, pcap_err) < 0) {
                snprintf(err, errlen, "capture on %s: %s", ifname, pcap_err);
                goto fail;
        }
        int fd = pcap_get_selectable_fd(c->pcap);
        if (fd < 0) {
                snprintf(err, errlen, "capture on %s: no selectable descriptor", ifname);
                goto fail;
        }
        c->dumper = pcap_dump_open(c->pcap, pcap_path);
        if (!c->dumper) {
                snprintf(err, errlen, "capture on %s: cannot create %s: %s", ifname, pcap_path,
                         pcap_geterr(c->pcap));
                goto fail;
        }
        (void) pcap_dump_flush(c->dumper); /* the file header, for a reader that starts now */
        r = uv_poll_init(loop, &c->poll, fd);
        if (r < 0) {
                snprintf(err, errlen, "capture on %s: %s", ifname, uv_strerror(r));
                pcap_dump_close(c->dumper);
                (void) unlink(pcap_path);
                goto fail;
        }
        c->poll.data = c;
        (void) uv_poll_start(&c->poll, UV_READABLE, on_readable);
        emit_start(c);
        return c;
fail:
        if (c)
                capture_free(c);
        return NULL;
}

void capture_on_end(Capture *c, CaptureEndFn fn)
{
        c->on_end = fn;
}

int capture_linktype(const Capture *c)
{
        return c->linktype;
}

/* ---- reading ---- */

/* Reads what pcap holds now, packet by packet with pcap_next_ex so that no libpcap frame is
 * on the stack while the callback runs: it may resume Lua code that closes the capture (which
 * drains again, then completes at once; the memory stays until the handle's close callback).
 * Each packet is in the file, flushed, before the callback sees it. Returns 0, or -EIO after a
 * capture error (the message in err). */
static int drain(Capture *c, char *err, size_t errlen)
{
        int r = 0;
        for (int i = 0; i < CAPTURE_MAX_BATCH && !c->closing; i++) {
                struct pcap_pkthdr *h;
                const u_char *bytes;
                int n = pcap_next_ex(c->pcap, &h, &bytes);
                if (n == 0 || n == PCAP_ERROR_BREAK)
                        break;
                if (n < 0) {
                        snprintf(err, errlen, "capture on %s: %s", c->ifname, pcap_geterr(c->pcap));
                        r = -EIO;
                        break;
                }
                pcap_dump((u_char *) c->dumper, h, bytes);
                (void) pcap_dump_flush(c->dumper);
                c->packets++;
                c->bytes += h->len;
                uint64_t frac = (uint64_t) h->ts.tv_usec * (c->nano ? 1 : 1000);
                c->cb(c->data, (uint64_t) h->ts.tv_sec * 1000000000u + frac, bytes, h->caplen,
                      h->len);
        }
        return r;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
        Capture *c = h->data;
        char err[PCAP_ERRBUF_SIZE + 128];
        /* Even on a poll error: pcap says why better ("The interface disappeared"). */
        int r = drain(c, err, sizeof err);
        if (c->closing) /* a callback closed it */
                return;
        if (r == 0 && status == 0)
                return;
        if (r == 0)
                snprintf(err, sizeof err, "capture on %s: %s", c->ifname, uv_strerror(status));
        c->failed = true;
        (void) uv_poll_stop(&c->poll);
        if (c->on_end)
                c->on_end(c->data, err);
}

/* ---- close ---- */

static void on_poll_closed(uv_handle_t *h)
{
        capture_free((Capture *) h);
}

Capture *capture_close(Capture *c)
{
        if (!c || c->closing)
                return NULL;
        if (!c->failed) {
                char err[PCAP_ERRBUF_SIZE + 128];
                (void) drain(c, err, sizeof err); /* what arrived since the last wakeup */
                if (c->closing)                   /* a callback closed it meanwhile */
                        return NULL;
        }
        c->closing = true;
        EventBuilder ev;
        event_begin(&ev, "capture.stop", 3);
        proto_kv_str(&ev.w, "ifname", c->ifname);
        proto_kv_uint(&ev.w, "packets", c->packets);
        proto_kv_uint(&ev.w, "bytes", c->bytes);
        event_end(&ev);
        (void) uv_poll_stop(&c->poll);
        pcap_dump_close(c->dumper);
        c->dumper = NULL;
        uv_close((uv_handle_t *) &c->poll, on_poll_closed);
        return NULL;
}

/* ---- summaries ---- */

typedef struct Out {
        char *buf;
        size_t size, len;
} Out;

__attribute__((format(printf, 2, 3))) static void out(Out *o, const char *fmt, ...)
{
        if (o->len + 1 >= o->size)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
        va_end(ap);
        if (n > 0)
                o->len += (size_t) n < o->size - o->len ? (size_t) n : o->size - o->len - 1;
}

static uint16_t be16(const uint8_t *p)
{
        return (uint16_t) (p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void out_mac(Out *o, const uint8_t *m)
{
        out(o, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* An address for "addr:port": IPv6 in brackets. */
static void ntop(int af, const uint8_t *a, bool bracket, char *buf, size_t size)
{
        char s[INET6_ADDRSTRLEN];
        if (!inet_ntop(af, a, s, sizeof s))
                snprintf(s, sizeof s, "?");
        snprintf(buf, size, bracket && af == AF_INET6 ? "[%s]" : "%s", s);
}

static void out_tcp(Out *o, const char *src, const char *dst, const uint8_t *p, size_t n,
                    size_t seglen)
{
        if (n < 20) {
                out(o, "%s > %s TCP truncated", src, dst);
                return;
        }
        size_t doff = (size_t) (p[12] >> 4) * 4;
        uint8_t fl = p[13];
        char flags[8];
        size_t k = 0;
        if (fl & 0x02)
                flags[k++] = 'S';
        if (fl & 0x01)
                flags[k++] = 'F';
        if (fl & 0x04)
                flags[k++] = 'R';
        if (fl & 0x08)
                flags[k++] = 'P';
        if (fl & 0x20)
                flags[k++] = 'U';
        if (fl & 0x10)
                flags[k++] = '.';
        flags[k] = 0;
        out(o, "%s:%u > %s:%u TCP [%s] seq %u", src, be16(p), dst, be16(p + 2), flags, be32(p + 4));
        if (fl & 0x10)
                out(o, " ack %u", be32(p + 8));
        out(o, " len %zu", seglen > doff ? seglen - doff : 0);
}

static void out_udp(Out *o, const char *src, const char *dst, const uint8_t *p, size_t n)
{
        if (n < 8) {
                out(o, "%s > %s UDP truncated", src, dst);
                return;
        }
        unsigned len = be16(p + 4);
        out(o, "%s:%u > %s:%u UDP len %u", src, be16(p), dst, be16(p + 2), len > 8 ? len - 8 : 0);
}

static void out_icmp(Out *o, const uint8_t *p, size_t n)
{
        if (n < 4) {
                out(o, " ICMP truncated");
                return;
        }
        static const char *const unreach[] = {"net", "host", "protocol", "port", "fragmentation"};
        uint8_t type = p[0], code = p[1];
        switch (type) {
        case 0:
        case 8:
                out(o, " ICMP echo %s", type ? "request" : "reply");
                if (n >= 8)
                        out(o, " id %u seq %u", be16(p + 4), be16(p + 6));
                break;
        case 3:
                if (code < 5)
                        out(o, " ICMP %s unreachable", unreach[code]);
                else
                        out(o, " ICMP unreachable code %u", code);
                break;
        case 11:
                out(o, " ICMP time exceeded");
                break;
        default:
                out(o, " ICMP type %u code %u", type, code);
        }
}

static void out_icmp6(Out *o, const uint8_t *p, size_t n)
{
        if (n < 4) {
                out(o, " ICMPv6 truncated");
                return;
        }
        uint8_t type = p[0];
        char a[ADDR_MAX];
        switch (type) {
        case 128:
        case 129:
                out(o, " ICMPv6 echo %s", type == 128 ? "request" : "reply");
                if (n >= 8)
                        out(o, " id %u seq %u", be16(p + 4), be16(p + 6));
                break;
        case 1:
                out(o, " ICMPv6 unreachable code %u", p[1]);
                break;
        case 133:
                out(o, " ICMPv6 router solicitation");
                break;
        case 134:
                out(o, " ICMPv6 router advertisement");
                break;
        case 135:
        case 136:
                out(o, " ICMPv6 neighbor %s", type == 135 ? "solicitation" : "advertisement");
                if (n >= 24) {
                        ntop(AF_INET6, p + 8, false, a, sizeof a);
                        out(o, type == 135 ? " who-has %s" : " tgt %s", a);
                }
                break;
        case 143:
                out(o, " ICMPv6 multicast listener report v2");
                break;
        default:
                out(o, " ICMPv6 type %u code %u", type, p[1]);
        }
}

static const char *ip_proto_name(unsigned proto)
{
        switch (proto) {
        case 2:
                return "IGMP";
        case 47:
                return "GRE";
        case 50:
                return "ESP";
        case 89:
                return "OSPF";
        case 112:
                return "VRRP";
        case 132:
                return "SCTP";
        default:
                return NULL;
        }
}

/* The transport part, after "IPv4 " or "IPv6 ": a and b are the bare addresses. */
static void out_l4(Out *o, int af, const uint8_t *src, const uint8_t *dst, unsigned proto,
                   const uint8_t *p, size_t n, size_t seglen)
{
        char a[ADDR_MAX], b[ADDR_MAX];
        bool ports = proto == 6 || proto == 17;
        ntop(af, src, ports, a, sizeof a);
        ntop(af, dst, ports, b, sizeof b);
        if (proto == 6) {
                out_tcp(o, a, b, p, n, seglen);
                return;
        }
        if (proto == 17) {
                out_udp(o, a, b, p, n);
                return;
        }
        out(o, "%s > %s", a, b);
        const char *name = ip_proto_name(proto);
        if (af == AF_INET && proto == 1)
                out_icmp(o, p, n);
        else if (af == AF_INET6 && proto == 58)
                out_icmp6(o, p, n);
        else if (name)
                out(o, " %s", name);
        else
                out(o, " proto %u", proto);
}

static void out_ipv4(Out *o, const uint8_t *p, size_t n)
{
        if (n < 20 || (p[0] >> 4) != 4) {
                out(o, "IPv4 truncated");
                return;
        }
        size_t ihl = (size_t) (p[0] & 0x0f) * 4;
        size_t total = be16(p + 2);
        if (ihl < 20 || n < ihl) {
                out(o, "IPv4 bad header");
                return;
        }
        out(o, "IPv4 ");
        if (be16(p + 6) & 0x1fff) { /* a later fragment: no transport header */
                char a[ADDR_MAX], b[ADDR_MAX];
                ntop(AF_INET, p + 12, false, a, sizeof a);
                ntop(AF_INET, p + 16, false, b, sizeof b);
                out(o, "%s > %s fragment proto %u", a, b, p[9]);
                return;
        }
        size_t seglen = total > ihl ? total - ihl : 0;
        out_l4(o, AF_INET, p + 12, p + 16, p[9], p + ihl, n - ihl, seglen);
}

static void out_ipv6(Out *o, const uint8_t *p, size_t n)
{
        if (n < 40 || (p[0] >> 4) != 6) {
                out(o, "IPv6 truncated");
                return;
        }
        unsigned next = p[6];
        size_t off = 40, end = 40 + (size_t) be16(p + 4);
        /* hop-by-hop, routing, destination options, fragment */
        while (next == 0 || next == 43 || next == 60 || next == 44) {
                if (n < off + 8)
                        break;
                unsigned nn = p[off];
                if (next == 44 && (be16(p + off + 2) & 0xfff8)) {
                        next = 44; /* a later fragment */
                        break;
                }
                off += next == 44 ? 8 : ((size_t) p[off + 1] + 1) * 8;
                next = nn;
        }
        out(o, "IPv6 ");
        if (next == 44 || n < off) {
                char a[ADDR_MAX], b[ADDR_MAX];
                ntop(AF_INET6, p + 8, false, a, sizeof a);
                ntop(AF_INET6, p + 24, false, b, sizeof b);
                out(o, "%s > %s %s", a, b, next == 44 ? "fragment" : "truncated");
                return;
        }
        out_l4(o, AF_INET6, p + 8, p + 24, next, p + off, n - off, end > off ? end - off : 0);
}

static void out_arp(Out *o, const uint8_t *p, size_t n)
{
        if (n < 28 || be16(p) != 1 || be16(p + 2) != 0x0800 || p[4] != 6 || p[5] != 4) {
                out(o, "ARP");
                return;
        }
        char spa[ADDR_MAX], tpa[ADDR_MAX];
        ntop(AF_INET, p + 14, false, spa, sizeof spa);
        ntop(AF_INET, p + 24, false, tpa, sizeof tpa);
        switch (be16(p + 6)) {
        case 1:
                out(o, "ARP who-has %s tell %s", tpa, spa);
                break;
        case 2:
                out(o, "ARP reply %s is-at ", spa);
                out_mac(o, p + 8);
                break;
        default:
                out(o, "ARP op %u", be16(p + 6));
        }
}

static void out_ethertype(Out *o, unsigned type, const uint8_t *p, size_t n)
{
        switch (type) {
        case 0x0800:
                out_ipv4(o, p, n);
                break;
        case 0x86dd:
                out_ipv6(o, p, n);
                break;
        case 0x0806:
                out_arp(o, p, n);
                break;
        default:
                out(o, "type 0x%04x len %zu", type, n);
        }
}

static void out_ethernet(Out *o, const uint8_t *p, size_t n)
{
        if (n < 14) {
                out(o, "Ethernet truncated");
                return;
        }
        unsigned type = be16(p + 12);
        size_t off = 14;
        while (type == 0x8100 || type == 0x88a8) {
                if (n < off + 4) {
                        out(o, "VLAN truncated");
                        return;
                }
                out(o, "VLAN %u ", be16(p + off) & 0x0fff);
                type = be16(p + off + 2);
                off += 4;
        }
        if (type < 0x0600 || (type != 0x0800 && type != 0x86dd && type != 0x0806)) {
                out(o, "Ethernet ");
                out_mac(o, p + 6);
                out(o, " > ");
                out_mac(o, p);
                if (type < 0x0600) {
                        out(o, " 802.3 len %u", type);
                        return;
                }
                out(o, " ");
        }
        out_ethertype(o, type, p + off, n - off);
}

size_t capture_summarize(int linktype, const uint8_t *p, size_t caplen, char *buf, size_t size)
{
        Out o = {.buf = buf, .size = size};
        if (size == 0)
                return 0;
        buf[0] = 0;
        switch (linktype) {
        case DLT_EN10MB:
                out_ethernet(&o, p, caplen);
                break;
        case DLT_LINUX_SLL:
                if (caplen < 16)
                        out(&o, "truncated");
                else
                        out_ethertype(&o, be16(p + 14), p + 16, caplen - 16);
                break;
        case DLT_LINUX_SLL2:
                if (caplen < 20)
                        out(&o, "truncated");
                else
                        out_ethertype(&o, be16(p), p + 20, caplen - 20);
                break;
        case DLT_RAW:
        case DLT_IPV4:
        case DLT_IPV6:
                if (caplen >= 1 && (p[0] >> 4) == 6)
                        out_ipv6(&o, p, caplen);
                else
                        out_ipv4(&o, p, caplen);
                break;
        default:
                out(&o, "link type %d len %zu", linktype, caplen);
        }
        return o.len;
}
