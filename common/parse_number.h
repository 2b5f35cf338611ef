/* parse_number.h - strict number parsing for command-line flags and job
 * fields: the whole string must be the number, in range and finite. atoi's
 * silent 0 for "abc" or "" would turn a typo into a different run. */
#ifndef SDXL_COMMON_PARSE_NUMBER_H
#define SDXL_COMMON_PARSE_NUMBER_H

/* 0 and *out set when s is a base-10 integer in [lo, hi]; -1 otherwise (*out untouched). */
int sd_parse_int(const char *s, long long lo, long long hi, long long *out);

/* 0 and *out set when s is a finite floating-point number; -1 otherwise. */
int sd_parse_double(const char *s, double *out);

#endif
