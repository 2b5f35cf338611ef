/* cli.c - what every `sdxl` command shares: the error line. */
#include "coordinator/cli/cli.h"

#include <stdarg.h>
#include <stdio.h>

void cli_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sdxl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
