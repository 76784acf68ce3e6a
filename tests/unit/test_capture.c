/* test_capture.c: unit tests for capture_summarize (src/host/net/capture.c), the one-line packet
 * decoder. Frames are built by hand; every prefix of each is decoded too, so a bounds error
 * shows under ASan. Live capture needs root and is tested in tests/capture.test.lua.
 *
 * Sections: frame builders, 1 Ethernet and ARP, 2 IPv4, 3 IPv6, 4 other links, 5 truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pcap/dlt.h>
#include <stdio.h>
#include <string.h>

#include "capture.h"

/* ---- frame builders ---- */

typedef struct Frame {
        uint8_t b[256];
        size_t n;
} Frame;

static void put(Frame *f, const void *p, size_t n)
{
        assert_true(f->n + n <= sizeof f->b);
        memcpy(f->b + f->n, p, n);
        f->n += n;
}

static void put8(Frame *f, unsigned v)
{
        uint8_t b = (uint8_t) v;
        put(f, &b, 1);
}

static void put16(Frame *f, unsigned v)
{
        put8(f, v >> 8);
        put8(f, v);
}

static void put32(Frame *f, uint32_t v)
{
        put16(f, v >> 16);
        put16(f, v & 0xffff);
}

static const uint8_t MAC_A[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
static const uint8_t MAC_B[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x03};
static const uint8_t BCAST[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void eth(Frame *f, const uint8_t *dst, const uint8_t *src, unsigned type)
{
        put(f, dst, 6);
        put(f, src, 6);
        put16(f, type);
}

/* IPv4 header, 10.0.0.a > 10.0.0.b, for a payload of plen bytes */
static void ipv4(Frame *f, unsigned proto, unsigned a, unsigned b, size_t plen, unsigned frag)
{
        put8(f, 0x45);
        put8(f, 0);
        put16(f, (unsigned) (20 + plen));
        put16(f, 1);
        put16(f, frag);
        put8(f, 64);
        put8(f, proto);
        put16(f, 0);
        put32(f, 0x0a000000u | a);
        put32(f, 0x0a000000u | b);
}

/* IPv6 header, fd00::a > fd00::b */
static void ipv6(Frame *f, unsigned next, unsigned a, unsigned b, size_t plen)
{
        put32(f, 0x60000000u);
        put16(f, (unsigned) plen);
        put8(f, next);
        put8(f, 64);
        put16(f, 0xfd00);
        for (int i = 0; i < 6; i++)
                put16(f, 0);
        put16(f, a);
        put16(f, 0xfd00);
        for (int i = 0; i < 6; i++)
                put16(f, 0);
        put16(f, b);
}

static void tcp(Frame *f, unsigned sport, unsigned dport, unsigned flags, uint32_t seq,
                uint32_t ack)
{
        put16(f, sport);
        put16(f, dport);
        put32(f, seq);
        put32(f, ack);
        put8(f, 5 << 4);
        put8(f, flags);
        put16(f, 65535);
        put16(f, 0);
        put16(f, 0);
}

/* Decodes f and every prefix of it; returns the full frame's line. */
static const char *summarize(int linktype, const Frame *f)
{
        static char line[256];
        char part[256];
        for (size_t n = 0; n < f->n; n++) {
                size_t len = capture_summarize(linktype, f->b, n, part, sizeof part);
                assert_int_equal(len, strlen(part));
        }
        size_t len = capture_summarize(linktype, f->b, f->n, line, sizeof line);
        assert_int_equal(len, strlen(line));
        return line;
}

/* ---- 1 Ethernet and ARP ---- */

static void test_arp(void **state)
{
        Frame f = {0};
        eth(&f, BCAST, MAC_A, 0x0806);
        put16(&f, 1);
        put16(&f, 0x0800);
        put8(&f, 6);
        put8(&f, 4);
        put16(&f, 1);
        put(&f, MAC_A, 6);
        put32(&f, 0x0a000002);
        put(&f, (uint8_t[6]){0}, 6);
        put32(&f, 0x0a000003);
        assert_string_equal(summarize(DLT_EN10MB, &f), "ARP who-has 10.0.0.3 tell 10.0.0.2");
        f.b[14 + 7] = 2; /* reply */
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "ARP reply 10.0.0.2 is-at 52:54:00:00:00:02");
}

static void test_unknown_ethertype_and_vlan(void **state)
{
        Frame f = {0};
        eth(&f, MAC_B, MAC_A, 0x88cc);
        put32(&f, 0);
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "Ethernet 52:54:00:00:00:02 > 52:54:00:00:00:03 type 0x88cc len 4");
        Frame v = {0};
        eth(&v, MAC_B, MAC_A, 0x8100);
        put16(&v, 0x2000 | 42);
        put16(&v, 0x0800);
        ipv4(&v, 17, 2, 3, 8, 0);
        put16(&v, 1000);
        put16(&v, 53);
        put16(&v, 8);
        put16(&v, 0);
        assert_string_equal(summarize(DLT_EN10MB, &v),
                            "VLAN 42 IPv4 10.0.0.2:1000 > 10.0.0.3:53 UDP len 0");
}

/* ---- 2 IPv4 ---- */

static void test_icmp(void **state)
{
        Frame f = {0};
        eth(&f, MAC_B, MAC_A, 0x0800);
        ipv4(&f, 1, 2, 3, 8, 0);
        put8(&f, 8);
        put8(&f, 0);
        put16(&f, 0);
        put16(&f, 7);
        put16(&f, 1);
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "IPv4 10.0.0.2 > 10.0.0.3 ICMP echo request id 7 seq 1");
        f.b[34] = 0;
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "IPv4 10.0.0.2 > 10.0.0.3 ICMP echo reply id 7 seq 1");
        f.b[34] = 3;
        f.b[35] = 3;
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "IPv4 10.0.0.2 > 10.0.0.3 ICMP port unreachable");
}

static void test_tcp_udp(void **state)
{
        Frame f = {0};
        eth(&f, MAC_B, MAC_A, 0x0800);
        ipv4(&f, 6, 2, 3, 20 + 5, 0);
        tcp(&f, 40000, 80, 0x18, 100, 200);
        put(&f, "hello", 5);
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "IPv4 10.0.0.2:40000 > 10.0.0.3:80 TCP [P.] seq 100 ack 200 len 5");
        f.b[14 + 20 + 13] = 0x02;
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "IPv4 10.0.0.2:40000 > 10.0.0.3:80 TCP [S] seq 100 len 5");

        Frame u = {0};
        eth(&u, MAC_B, MAC_A, 0x0800);
        ipv4(&u, 17, 2, 3, 8 + 3, 0);
        put16(&u, 5353);
        put16(&u, 9);
        put16(&u, 11);
        put16(&u, 0);
        put(&u, "abc", 3);
        assert_string_equal(summarize(DLT_EN10MB, &u), "IPv4 10.0.0.2:5353 > 10.0.0.3:9 UDP len 3");
}

static void test_ipv4_other(void **state)
{
        Frame f = {0};
        eth(&f, MAC_B, MAC_A, 0x0800);
        ipv4(&f, 47, 2, 3, 4, 0);
        put32(&f, 0);
        assert_string_equal(summarize(DLT_EN10MB, &f), "IPv4 10.0.0.2 > 10.0.0.3 GRE");
        f.b[14 + 9] = 253;
        assert_string_equal(summarize(DLT_EN10MB, &f), "IPv4 10.0.0.2 > 10.0.0.3 proto 253");
        Frame g = {0};
        eth(&g, MAC_B, MAC_A, 0x0800);
        ipv4(&g, 17, 2, 3, 8, 185); /* a later fragment */
        put32(&g, 0);
        put32(&g, 0);
        assert_string_equal(summarize(DLT_EN10MB, &g),
                            "IPv4 10.0.0.2 > 10.0.0.3 fragment proto 17");
}

/* ---- 3 IPv6 ---- */

static void test_ipv6(void **state)
{
        Frame f = {0};
        eth(&f, MAC_B, MAC_A, 0x86dd);
        ipv6(&f, 58, 2, 3, 8);
        put8(&f, 128);
        put8(&f, 0);
        put16(&f, 0);
        put16(&f, 9);
        put16(&f, 4);
        assert_string_equal(summarize(DLT_EN10MB, &f),
                            "IPv6 fd00::2 > fd00::3 ICMPv6 echo request id 9 seq 4");

        Frame ns = {0};
        eth(&ns, MAC_B, MAC_A, 0x86dd);
        ipv6(&ns, 0, 2, 3, 8 + 24); /* through a hop-by-hop header */
        put8(&ns, 58);
        put8(&ns, 0);
        for (int i = 0; i < 6; i++)
                put8(&ns, 0);
        put8(&ns, 135);
        put8(&ns, 0);
        put16(&ns, 0);
        put32(&ns, 0);
        put16(&ns, 0xfd00);
        for (int i = 0; i < 6; i++)
                put16(&ns, 0);
        put16(&ns, 3);
        assert_string_equal(summarize(DLT_EN10MB, &ns),
                            "IPv6 fd00::2 > fd00::3 ICMPv6 neighbor solicitation who-has fd00::3");

        Frame t = {0};
        eth(&t, MAC_B, MAC_A, 0x86dd);
        ipv6(&t, 6, 2, 3, 20);
        tcp(&t, 1234, 22, 0x11, 5, 6);
        assert_string_equal(summarize(DLT_EN10MB, &t),
                            "IPv6 [fd00::2]:1234 > [fd00::3]:22 TCP [F.] seq 5 ack 6 len 0");
}

/* ---- 4 other links ---- */

static void test_raw_and_cooked(void **state)
{
        Frame f = {0};
        ipv4(&f, 17, 2, 3, 8, 0);
        put16(&f, 1);
        put16(&f, 2);
        put16(&f, 8);
        put16(&f, 0);
        assert_string_equal(summarize(DLT_RAW, &f), "IPv4 10.0.0.2:1 > 10.0.0.3:2 UDP len 0");

        Frame s = {0};
        put16(&s, 0); /* Linux cooked v1: packet type, ARPHRD, address length, address */
        put16(&s, 1);
        put16(&s, 6);
        put(&s, MAC_A, 6);
        put16(&s, 0);
        put16(&s, 0x0800);
        put(&s, f.b, f.n);
        assert_string_equal(summarize(DLT_LINUX_SLL, &s), "IPv4 10.0.0.2:1 > 10.0.0.3:2 UDP len 0");

        char line[64];
        capture_summarize(147 /* DLT_USER0 */, f.b, f.n, line, sizeof line);
        assert_string_equal(line, "link type 147 len 28");
}

/* ---- 5 truncation ---- */

static void test_truncated_and_small_buffers(void **state)
{
        Frame f = {0};
        eth(&f, MAC_B, MAC_A, 0x0800);
        ipv4(&f, 6, 2, 3, 20, 0);
        char line[256];
        capture_summarize(DLT_EN10MB, f.b, f.n, line, sizeof line);
        assert_string_equal(line, "IPv4 10.0.0.2 > 10.0.0.3 TCP truncated");
        capture_summarize(DLT_EN10MB, f.b, 10, line, sizeof line);
        assert_string_equal(line, "Ethernet truncated");
        capture_summarize(DLT_EN10MB, f.b, 20, line, sizeof line);
        assert_string_equal(line, "IPv4 truncated");
        tcp(&f, 1, 2, 0x02, 0, 0);
        for (size_t size = 1; size < 20; size++) {
                char small[20];
                memset(small, 'x', sizeof small);
                size_t n = capture_summarize(DLT_EN10MB, f.b, f.n, small, size);
                assert_int_equal(n, size - 1);
                assert_int_equal(small[size - 1], 0);
                assert_int_equal(small[size], 'x');
        }
        assert_int_equal(capture_summarize(DLT_EN10MB, f.b, f.n, line, 0), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_arp),
            cmocka_unit_test(test_unknown_ethertype_and_vlan),
            cmocka_unit_test(test_icmp),
            cmocka_unit_test(test_tcp_udp),
            cmocka_unit_test(test_ipv4_other),
            cmocka_unit_test(test_ipv6),
            cmocka_unit_test(test_raw_and_cooked),
            cmocka_unit_test(test_truncated_and_small_buffers),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
