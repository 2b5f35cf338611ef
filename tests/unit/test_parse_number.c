/* test_parse_number.c - strict flag parsing: a typo must be refused, never
 * read as 0 or as a prefix the way atoi/strtol alone would. */
#include <criterion/criterion.h>

#include "common/parse_number.h"

Test(parse_number, integers_in_range_accepted)
{
    long long v = -1;
    cr_assert_eq(sd_parse_int("42", 1, 100, &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(sd_parse_int("-7", -10, 10, &v), 0);
    cr_assert_eq(v, -7);
    cr_assert_eq(sd_parse_int("9223372036854775807", 0, 0x7fffffffffffffffLL, &v), 0);
    cr_assert_eq(v, 0x7fffffffffffffffLL);
}

Test(parse_number, bad_integers_refused_and_output_untouched)
{
    const char *bad[] = {"", "abc", "12abc", "1e3", "3.5", " ", "0x10", "101", "0", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        long long v = 555;
        cr_assert_eq(sd_parse_int(bad[i], 1, 100, &v), -1, "'%s' accepted", bad[i]);
        cr_assert_eq(v, 555, "'%s' changed the output", bad[i]);
    }
    long long v = 555;
    cr_assert_eq(sd_parse_int(NULL, 1, 100, &v), -1);
}

Test(parse_number, doubles)
{
    double d = 0;
    cr_assert_eq(sd_parse_double("7.5", &d), 0);
    cr_assert_eq(d, 7.5);
    cr_assert_eq(sd_parse_double("-1e-3", &d), 0);
    cr_assert_eq(d, -1e-3);
    const char *bad[] = {"", "x", "1.5x", "nan", "inf", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(sd_parse_double(bad[i], &d), -1, "'%s' accepted", bad[i]);
}
