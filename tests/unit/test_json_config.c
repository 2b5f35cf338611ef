/* test_json_config.c - config.json reading (common/json_config.h): typed
 * getters, defaults for absent or null keys, errors naming file and key,
 * and Python's non-finite numbers. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/json_config.h"
#include "tests/test_util.h"

static sd_json_doc load(const char *dir, const char *text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write(path, text, strlen(text));
    sd_json_doc d;
    sd_error err = {0};
    cr_assert_eq(sd_json_load(&d, path, &err), SD_OK, "%s", err.msg);
    return d;
}

Test(json_config, typed_getters_defaults_and_errors_name_file_and_key)
{
    char *dir = tu_tmpdir();
    sd_json_doc d = load(dir, "{\"n\": 3, \"x\": 0.5, \"b\": true, \"s\": \"hi\", \"z\": null, "
                              "\"l\": [1, 2, 3], \"names\": [\"a\", \"b\"]}");
    sd_error err = {0};
    long long n;
    double x;
    int b;
    const char *s;
    cr_assert_eq(sd_json_int(&d, "n", &n, &err), SD_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(sd_json_double(&d, "x", &x, &err), SD_OK);
    cr_assert_float_eq(x, 0.5, 0);
    cr_assert_eq(sd_json_bool(&d, "b", &b, &err), SD_OK);
    cr_assert_eq(b, 1);
    cr_assert_eq(sd_json_string(&d, "s", &s, &err), SD_OK);
    cr_assert_str_eq(s, "hi");
    cr_assert_eq(sd_json_int_or(&d, "z", 7), 7, "null reads as absent");
    cr_assert_eq(sd_json_int_or(&d, "absent", 9), 9);
    cr_assert_str_eq(sd_json_string_or(&d, "absent", "dflt"), "dflt");
    cr_assert_neq(sd_json_int(&d, "missing_key", &n, &err), SD_OK);
    cr_assert(strstr(err.msg, "missing_key") && strstr(err.msg, "config.json"), "%s", err.msg);
    cr_assert_neq(sd_json_int(&d, "s", &n, &err), SD_OK, "a string is not an integer");
    long long arr[3];
    cr_assert_eq(sd_json_int_array(&d, "l", 0, arr, 3, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(arr[2], 3);
    cr_assert_neq(sd_json_int_array(&d, "l", 0, arr, 2, &err), SD_OK, "length 3 is not 2");
    cr_assert_eq(sd_json_int_array(&d, "n", 1, arr, 3, &err), SD_OK, "a scalar repeated");
    cr_assert_eq(arr[0] + arr[1] + arr[2], 9);
    const char *names[4];
    int k;
    cr_assert_eq(sd_json_string_list(&d, "names", names, 4, &k, &err), SD_OK);
    cr_assert_eq(k, 2);
    cr_assert_str_eq(names[1], "b");
    sd_json_free(&d);
    tu_rmrf(dir);
    free(dir);
}

Test(json_config, python_infinity_and_nan_read_as_null_outside_strings)
{
    char *dir = tu_tmpdir();
    sd_json_doc d = load(dir, "{\"lo\": -Infinity, \"hi\": Infinity, \"q\": NaN, \"t\": \"-Infinity NaN\"}");
    cr_assert(json_is_null(json_object_get(d.root, "lo")));
    cr_assert(json_is_null(json_object_get(d.root, "hi")));
    cr_assert(json_is_null(json_object_get(d.root, "q")));
    cr_assert_str_eq(json_string_value(json_object_get(d.root, "t")), "-Infinity NaN");
    sd_json_free(&d);
    tu_rmrf(dir);
    free(dir);
}

Test(json_config, a_malformed_file_is_refused_naming_it)
{
    char *dir = tu_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/broken.json", dir);
    tu_write(path, "{\"a\": ", 6);
    sd_json_doc d;
    sd_error err = {0};
    cr_assert_neq(sd_json_load(&d, path, &err), SD_OK);
    cr_assert(strstr(err.msg, "broken.json"), "%s", err.msg);
    tu_rmrf(dir);
    free(dir);
}
