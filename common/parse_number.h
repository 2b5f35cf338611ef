/* parse_number.h - strict number parsing for command-line flags and job
 * fields: the whole string must be the number, in range and finite. atoi's
 * silent 0 for "abc" or "" would turn a typo into a different run. */
#ifndef SDXL_COMMON_PARSE_NUMBER_H
#define SDXL_COMMON_PARSE_NUMBER_H

/* 0 and *out set when s is a base-10 integer in [lo, hi]; -1 otherwise (*out untouched). */
int sd_parse_int(const char *s, long long lo, long long hi, long long *out);

/* A command-line flag's int value: 0 and *out set when in [lo, hi];
 * otherwise prints "PROG: FLAG must be a whole number in LO..HI, not 'V'"
 * to stderr and returns -1 (the caller exits 2, a usage error). */
int sd_parse_int_flag(const char *prog, const char *flag, const char *v, int lo, int hi, int *out);

/* The value of the flag argv[*i]: argv[++*i], or, when it is the last
 * argument, NULL after printing "PROG: FLAG needs a value" to stderr (the
 * caller exits 2). */
const char *sd_flag_value(const char *prog, int argc, char **argv, int *i);

/* 0 and *out set when s is a finite floating-point number; -1 otherwise. */
int sd_parse_double(const char *s, double *out);

#endif
