/* proto_harness.h: what the protocol codec's unit tests share (proto_harness.c): frames built,
 * decoded and rejected, a message packed and checked, a fixed random sequence. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define E_BAD (-EBADMSG)

#define CASE(num, fn)                                                                              \
        {                                                                                          \
                .name = num " " #fn, .test_func = fn                                               \
        }

void put_le32(uint8_t *p, uint32_t v);
void decode(ProtoWriter *w, ProtoReader *r, msgpack_object *msg);
void expect_rejected_len(const void *body, size_t n, uint32_t len, int err);
void expect_rejected(const void *body, size_t n, int err);
int pack_msg(ProtoWriter *w, uint64_t id, const char *op);
void check_msg(const msgpack_object *msg, uint64_t id, const char *op);
/* xorshift64*: a fixed sequence on every libc */
uint64_t rng_next(uint64_t *s);
