/* A VM's configuration by its field table (src/host/vmm/vm_config.c): a copy is deep and equal,
 * the saved fields go to JSON and come back, and a saved object with a field of the wrong
 * kind, out of its bounds, or with a NUL in a string is refused, naming the field. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vm_config.h"

static const VmConfig sample = {
    .image = "default",
    .append = "quiet",
    .memory_mb = 512,
    .cpus = 2,
    .timeout_ms = 5000,
    .accel = "tcg",
    .workers = -1,
    .initial_time = "2030-01-01T00:00:00",
    .has_rng_seed = true,
    .rng_seed = 42,
    .ram_path = "/tmp/ram",
};

static void test_copy_is_deep_and_equal(void **state)
{
        VmConfig c;
        assert_int_equal(vm_config_copy(&c, &sample), 0);
        assert_ptr_not_equal(c.image, sample.image);
        assert_string_equal(c.image, "default");
        assert_null(c.kernel);
        assert_true(vm_config_equal(&c, &sample, VMCFG_SPARE));
        c.cpus = 3;
        assert_false(vm_config_equal(&c, &sample, VMCFG_SPARE));
        c.cpus = 2;
        c.timeout_ms = 1; /* not part of what a spare must match */
        assert_true(vm_config_equal(&c, &sample, VMCFG_SPARE));
        vm_config_clear(&c);
        assert_null(c.image);
}

static void test_json_round_trip(void **state)
{
        json_t *o = vm_config_to_json(&sample);
        assert_non_null(o);
        assert_null(json_object_get(o, "kernel"));   /* unset: left out */
        assert_null(json_object_get(o, "ram_path")); /* not saved */
        assert_null(json_object_get(o, "timeout_ms"));
        assert_int_equal(json_integer_value(json_object_get(o, "rng_seed")), 42);
        VmConfig back;
        char err[256] = "";
        assert_int_equal(vm_config_from_json(o, &back, err, sizeof err), 0);
        VmConfig want = sample;
        want.ram_path = NULL;
        want.timeout_ms = 0;
        assert_true(vm_config_equal(&back, &want, VMCFG_SAVED));
        assert_false(vm_config_equal(&back, &sample, VMCFG_SPARE)); /* ram_path */
        vm_config_clear(&back);
        json_decref(o);
}

static void refused(const char *text, const char *field)
{
        json_t *o = json_loads(text, JSON_ALLOW_NUL, NULL);
        assert_non_null(o);
        VmConfig c;
        char err[256] = "";
        assert_int_equal(vm_config_from_json(o, &c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, field));
        assert_null(c.image);
        json_decref(o);
}

static void test_bad_saved_fields_are_refused(void **state)
{
        refused("{\"image\": 7}", "'image'");
        refused("{\"image\": \"a\\u0000b\"}", "'image'");
        refused("{\"image\": \"default\", \"cpus\": 65}", "'cpus'");
        refused("{\"memory_mb\": -1}", "'memory_mb'");
        refused("{\"memory_mb\": 1.5}", "'memory_mb'");
        refused("{\"workers\": 17}", "'workers'");
        refused("{\"rng_seed\": -1}", "'rng_seed'");
        json_t *arr = json_array();
        VmConfig c;
        char err[64];
        assert_int_equal(vm_config_from_json(arr, &c, err, sizeof err), -EINVAL);
        json_decref(arr);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_copy_is_deep_and_equal),
            cmocka_unit_test(test_json_round_trip),
            cmocka_unit_test(test_bad_saved_fields_are_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
