/* test_hashmap.c - the open-addressing maps (common/hashmap.h) against a
 * plain array of what was put, through growth, overwrites and clear. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/hashmap.h"

Test(hashmap, strmap_finds_every_key_through_growth_and_overwrites)
{
    sd_strmap m;
    sd_strmap_init(&m);
    enum { N = 5000 };
    char key[32];
    for (int i = 0; i < N; i++) {
        int l = snprintf(key, sizeof key, "key-%d", i);
        cr_assert_eq(sd_strmap_put(&m, key, (size_t)l, i), 0);
    }
    for (int i = 0; i < N; i += 7) { /* overwrite some */
        int l = snprintf(key, sizeof key, "key-%d", i);
        cr_assert_eq(sd_strmap_put(&m, key, (size_t)l, -i), 0);
    }
    for (int i = 0; i < N; i++) {
        int l = snprintf(key, sizeof key, "key-%d", i);
        int32_t v = 12345;
        cr_assert_eq(sd_strmap_get(&m, key, (size_t)l, &v), 1, "%s missing", key);
        cr_assert_eq(v, i % 7 ? i : -i, "%s", key);
    }
    int32_t v;
    cr_assert_eq(sd_strmap_get(&m, "key-", 4, &v), 0);
    cr_assert_eq(sd_strmap_get(&m, "key-1", 4, &v), 0, "a prefix is another key");
    /* keys with NUL bytes and the empty key are keys like any other */
    cr_assert_eq(sd_strmap_put(&m, "a\0b", 3, 77), 0);
    cr_assert_eq(sd_strmap_put(&m, "", 0, 78), 0);
    cr_assert_eq(sd_strmap_get(&m, "a\0b", 3, &v), 1);
    cr_assert_eq(v, 77);
    cr_assert_eq(sd_strmap_get(&m, "a", 1, &v), 0);
    cr_assert_eq(sd_strmap_get(&m, "", 0, &v), 1);
    cr_assert_eq(v, 78);
    sd_strmap_clear(&m);
    cr_assert_eq(sd_strmap_get(&m, "key-3", 5, &v), 0);
    sd_strmap_free(&m);
}

Test(hashmap, u64map_keys_zero_and_max_and_growth)
{
    sd_u64map m;
    sd_u64map_init(&m);
    for (uint64_t i = 0; i < 20000; i++)
        cr_assert_eq(sd_u64map_put(&m, i * 0x9E3779B97F4A7C15ull, i), 0);
    cr_assert_eq(sd_u64map_put(&m, UINT64_MAX - 1, 5), 0);
    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t v = 0;
        cr_assert_eq(sd_u64map_get(&m, i * 0x9E3779B97F4A7C15ull, &v), 1);
        cr_assert_eq(v, i);
    }
    uint64_t v;
    cr_assert_eq(sd_u64map_get(&m, 0, &v), 1, "key 0 was put (i = 0)");
    cr_assert_eq(v, 0);
    cr_assert_eq(sd_u64map_get(&m, UINT64_MAX - 1, &v), 1);
    cr_assert_eq(v, 5);
    cr_assert_eq(sd_u64map_get(&m, 12345, &v), 0);
    sd_u64map_free(&m);
}

Test(hashmap, hash_bytes_depends_on_every_byte)
{
    uint64_t h0 = sd_hash_bytes("abcdefgh", 8);
    cr_assert_neq(h0, sd_hash_bytes("abcdefgi", 8));
    cr_assert_neq(h0, sd_hash_bytes("abcdefg", 7));
    cr_assert_eq(h0, sd_hash_bytes("abcdefgh", 8));
}
