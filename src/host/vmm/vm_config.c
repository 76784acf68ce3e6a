/* vm_config.c: clearing, copying, comparing, saving and loading a VmConfig, by its field table. */
#include "vm_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vm_config_init(VmConfig *c)
{
        *c = (VmConfig){0};
#define INIT_STR(name, unset)
#define INIT_NUM(name, unset)                                 c->name = unset;
#define INIT_U64                                              INIT_NUM
#define INIT_UINT                                             INIT_NUM
#define INIT_INT                                              INIT_NUM
#define INIT_SEED                                             INIT_NUM
#define INIT(kind, name, flags, opt, reader, unset, min, max) INIT_##kind(name, unset)
        VM_CONFIG_FIELDS(INIT)
}

void vm_config_clear(VmConfig *c)
{
#define CLEAR_STR(name) free((char *) c->name);
#define CLEAR_U64(name)
#define CLEAR_UINT(name)
#define CLEAR_INT(name)
#define CLEAR_SEED(name)
#define CLEAR(kind, name, flags, opt, reader, unset, min, max) CLEAR_##kind(name)
        VM_CONFIG_FIELDS(CLEAR)
        *c = (VmConfig){0};
}

static int dup_str(const char **dst, const char *src)
{
        *dst = NULL;
        if (src && !(*dst = strdup(src)))
                return -ENOMEM;
        return 0;
}

int vm_config_copy(VmConfig *dst, const VmConfig *src)
{
        int r = 0;
        *dst = *src;
#define COPY_STR(name) r = r ? (dst->name = NULL, r) : dup_str(&dst->name, src->name);
#define COPY_U64(name)
#define COPY_UINT(name)
#define COPY_INT(name)
#define COPY_SEED(name)
#define COPY(kind, name, flags, opt, reader, unset, min, max) COPY_##kind(name)
        VM_CONFIG_FIELDS(COPY)
        if (r < 0)
                vm_config_clear(dst);
        return r;
}

static bool same_str(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

bool vm_config_equal(const VmConfig *a, const VmConfig *b, unsigned flags)
{
#define SAME_STR(name)  same_str(a->name, b->name)
#define SAME_U64(name)  a->name == b->name
#define SAME_UINT(name) a->name == b->name
#define SAME_INT(name)  a->name == b->name
#define SAME_SEED(name) a->has_##name == b->has_##name && a->name == b->name
#define SAME(kind, name, fl, opt, reader, unset, min, max)                                         \
        &&(((fl) &flags) != flags || (SAME_##kind(name)))
        return true VM_CONFIG_FIELDS(SAME);
}

static int set_new(json_t *o, const char *key, json_t *v)
{
        return v ? json_object_set_new(o, key, v) : -1;
}

json_t *vm_config_to_json(const VmConfig *c)
{
        json_t *o = json_object();
        int r = o ? 0 : -1;
#define SAVE_STR(name)  r |= c->name ? set_new(o, #name, json_string(c->name)) : 0;
#define SAVE_U64(name)  r |= set_new(o, #name, json_integer((json_int_t) c->name));
#define SAVE_UINT(name) r |= set_new(o, #name, json_integer((json_int_t) c->name));
#define SAVE_INT(name)  r |= set_new(o, #name, json_integer((json_int_t) c->name));
#define SAVE_SEED(name)                                                                            \
        r |= c->has_##name ? set_new(o, #name, json_integer((json_int_t) c->name)) : 0;
#define SAVE(kind, name, flags, opt, reader, unset, min, max)                                      \
        if ((flags) &VMCFG_SAVED) {                                                                \
                SAVE_##kind(name)                                                                  \
        }
        if (o) {
                VM_CONFIG_FIELDS(SAVE)
        }
        if (r != 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* Each loader reads key from o into its field: 0, 1 when absent, or -EINVAL with err. */
static int load_str(const json_t *o, const char *key, long long max, const char **dst, char *err,
                    size_t errlen)
{
        const json_t *v = json_object_get(o, key);
        if (!v || json_is_null(v))
                return 1;
        if (!json_is_string(v) || json_string_length(v) > (size_t) max ||
            strlen(json_string_value(v)) != json_string_length(v)) {
                snprintf(err, errlen, "field '%s' must be a string of at most %lld bytes", key,
                         max);
                return -EINVAL;
        }
        *dst = strdup(json_string_value(v));
        return *dst ? 0 : -ENOMEM;
}

static int load_int(const json_t *o, const char *key, long long unset, long long min, long long max,
                    long long *dst, char *err, size_t errlen)
{
        const json_t *v = json_object_get(o, key);
        if (!v)
                return 1;
        long long n = json_is_integer(v) ? json_integer_value(v) : 0;
        if (!json_is_integer(v) || (n != unset && (n < min || n > max))) {
                snprintf(err, errlen, "field '%s' must be %lld or an integer in %lld..%lld", key,
                         unset, min, max);
                return -EINVAL;
        }
        *dst = n;
        return 0;
}

int vm_config_from_json(const json_t *o, VmConfig *c, char *err, size_t errlen)
{
        long long n = 0;
        int r = 0;
        vm_config_init(c);
        if (!json_is_object(o)) {
                snprintf(err, errlen, "not a JSON object");
                return -EINVAL;
        }
#define LOAD_STR(name, unset, min, max) r = load_str(o, #name, max, &c->name, err, errlen);
#define LOAD_NUM(name, unset, min, max)                                                            \
        r = load_int(o, #name, unset, min, max, &n, err, errlen);                                  \
        if (r == 0)                                                                                \
                c->name = (__typeof__(c->name)) n;
#define LOAD_U64  LOAD_NUM
#define LOAD_UINT LOAD_NUM
#define LOAD_INT  LOAD_NUM
#define LOAD_SEED(name, unset, min, max)                                                           \
        LOAD_NUM(name, unset, min, max)                                                            \
        c->has_##name = r == 0;
#define LOAD(kind, name, flags, opt, reader, unset, min, max)                                      \
        if (((flags) &VMCFG_SAVED) && r >= 0) {                                                    \
                LOAD_##kind(name, unset, min, max)                                                 \
        }
        VM_CONFIG_FIELDS(LOAD)
        if (r < 0)
                vm_config_clear(c);
        return r < 0 ? r : 0;
}
