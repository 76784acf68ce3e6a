/* nbd_wire.h: the parts of the NBD protocol (github.com/NetworkBlockDevice/nbd, doc/proto.md)
 * that a disk's server speaks with QEMU's NBD client: fixed newstyle negotiation with
 * NBD_OPT_GO (or NBD_OPT_EXPORT_NAME), and simple replies. Every integer on the wire is big
 * endian. */
#pragma once

#include <stdint.h>

#define NBD_MAGIC              UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_IHAVEOPT           UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_REP_MAGIC          UINT64_C(0x0003e889045565a9) /* an option's reply */
#define NBD_REQ_MAGIC          UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC UINT32_C(0x67446698)

/* handshake flags (server), client flags */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* options */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT       2
#define NBD_OPT_GO          7
#define NBD_OPT_INFO        6

/* option replies */
#define NBD_REP_ACK         1
#define NBD_REP_INFO        3
#define NBD_REP_ERR_UNSUP   (UINT32_C(1) << 31 | 1)
#define NBD_REP_ERR_INVALID (UINT32_C(1) << 31 | 3)
#define NBD_REP_ERR_UNKNOWN (UINT32_C(1) << 31 | 6)

#define NBD_INFO_EXPORT     0
#define NBD_INFO_BLOCK_SIZE 3

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS         (1u << 0)
#define NBD_FLAG_SEND_FLUSH        (1u << 2)
#define NBD_FLAG_SEND_FUA          (1u << 3)
#define NBD_FLAG_SEND_TRIM         (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)

/* commands and their flags */
#define NBD_CMD_READ         0
#define NBD_CMD_WRITE        1
#define NBD_CMD_DISC         2
#define NBD_CMD_FLUSH        3
#define NBD_CMD_TRIM         4
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_FLAG_FUA     (1u << 0)

/* the request header: magic u32, flags u16, type u16, handle u64, offset u64, length u32 */
#define NBD_REQUEST_SIZE 28
/* the simple reply: magic u32, error u32, handle u64 (then the data of a read that worked) */
#define NBD_REPLY_SIZE 16

/* What this server takes in one request, and says so (NBD_INFO_BLOCK_SIZE). */
#define NBD_MIN_BLOCK       512u
#define NBD_PREFERRED_BLOCK 4096u
#define NBD_MAX_REQUEST     (32u << 20)
/* A negotiation option's data, at most (export names and info requests are short). */
#define NBD_MAX_OPTION 4096u
