/* parse_number.c - see parse_number.h */
#include "parse_number.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int sd_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int sd_parse_double(const char *s, double *out)
{
    if (!s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

const char *sd_flag_value(const char *prog, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value\n", prog, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int sd_parse_int_flag(const char *prog, const char *flag, const char *v, int lo, int hi, int *out)
{
    long long n;
    if (sd_parse_int(v, lo, hi, &n)) {
        fprintf(stderr, "%s: %s must be a whole number in %d..%d, not '%s'\n", prog, flag, lo, hi, v ? v : "");
        return -1;
    }
    *out = (int)n;
    return 0;
}
