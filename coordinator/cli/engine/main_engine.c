/* main_engine.c - `sdxl-engine`, the in-process half of the user CLI:
 * `sdxl generate|eval|inspect|tokenize|random-model|devices` start it (see
 * main_sdxl.c); it links the engine and the compute backends. Run directly
 * it takes the same arguments: `sdxl-engine generate --model DIR ...`. */
#include <stdio.h>
#include <string.h>

#include "coordinator/cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
} commands[] = {
    {"generate", cmd_generate}, {"inspect", cmd_inspect},           {"tokenize", cmd_tokenize},
    {"eval", cmd_eval},         {"random-model", cmd_random_model}, {"devices", cmd_devices},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; argc >= 2 && i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "usage: sdxl-engine generate|eval|inspect|tokenize|random-model|devices [options]\n"
                    "(the in-process commands of sdxl; 'sdxl --help' lists every command)\n");
    return 2;
}
