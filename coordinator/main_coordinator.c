/* main_coordinator.c - the coordinator process (broker of the cluster).
 * Not built yet: prints its usage. See DESIGN.md, "Coordinator". */
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl-coordinator --bind ENDPOINT --state DIR\n\n"
                 "The cluster coordinator. Not implemented yet in this build: the job\n"
                 "broker arrives with the cluster work (see README.md).\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
