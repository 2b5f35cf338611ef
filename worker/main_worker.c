/* main_worker.c - the worker process (text, unet or final role).
 * Not built yet: prints its usage. See DESIGN.md, "Coordinator". */
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl-worker --coordinator ENDPOINT --role text|unet|final --model DIR\n"
                 "                   [--refiner DIR] [--device cpu|cuda:N] [--capacity N]\n\n"
                 "A cluster worker. Not implemented yet in this build: it arrives with the\n"
                 "cluster work (see README.md).\n");
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
