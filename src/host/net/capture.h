/* capture.h: live packet capture with libpcap on a host interface, written to a pcap file and
 * handed to a callback packet by packet, driven by the libuv loop. Also a one-line decoder.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct Capture Capture;

/* One captured packet: ts_ns is the capture time (ns since the epoch), bytes holds caplen of
 * the packet's len bytes (caplen < len when the snapshot length cut it). bytes is only valid
 * during the call. The packet is already in the file. The callback may call capture_close;
 * no libpcap call is in progress while it runs. */
typedef void (*CapturePacketFn)(void *data, uint64_t ts_ns, const uint8_t *bytes, size_t caplen,
                                size_t len);
/* The capture stopped on its own (the interface went away): msg says why, naming the
 * interface. Called at most once, never after capture_close. */
typedef void (*CaptureEndFn)(void *data, const char *msg);

/* Starts capturing on ifname (promiscuous, immediate mode, 65535-byte snapshots, nanosecond
 * timestamps when the kernel has them) through bpf_filter (NULL or "" for everything), and
 * writes every packet to a new pcap file at pcap_path, flushed after each packet so that
 * tcpdump or Wireshark can read it while it grows. Emits capture.start. Returns NULL on
 * failure, with a message naming the interface (and the filter or the path) in err. */
Capture *capture_open(uv_loop_t *loop, const char *ifname, const char *bpf_filter,
                      const char *pcap_path, CapturePacketFn cb, void *data, char *err,
                      size_t errlen);
/* Optional: called if the capture stops by itself (see CaptureEndFn). */
void capture_on_end(Capture *c, CaptureEndFn fn);
/* Reads what the kernel still holds (passing it to the callback), stops, emits capture.stop,
 * and completes the pcap file. No callback runs after it returns. The memory
 * goes once the loop has run the handle's close callback. Accepts NULL; returns NULL. */
Capture *capture_close(Capture *c);

/* The link-layer type of the capture (DLT_EN10MB...), for capture_summarize. */
int capture_linktype(const Capture *c);

/* Writes a one-line description of a packet of link type linktype into buf (always
 * NUL-terminated when size > 0), like "IPv4 10.0.0.2 > 10.0.0.3 ICMP echo request id 7 seq 1"
 * or "IPv4 10.0.0.2:40000 > 10.0.0.3:80 TCP [S] len 0". Decodes Ethernet (with VLAN tags),
 * Linux cooked and raw IP links; ARP, IPv4, IPv6, ICMP, ICMPv6, TCP and UDP. Never fails:
 * what it cannot decode it names ("Ethernet 02:..:01 > ff:..:ff type 0x88cc", "truncated").
 * Returns the length of the line. */
size_t capture_summarize(int linktype, const uint8_t *p, size_t caplen, char *buf, size_t size);
