/* main_sdxl.c - entry point of the user CLI `sdxl`: dispatches to the
 * subcommands in cmd_*.c. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"generate", cmd_generate, "prompt to image in one process (text, unet and final stages)"},
    {"submit", cmd_submit, "submit a dataset job (prompt file) to a coordinator"},
    {"status", cmd_status, "jobs and their progress (--json)"},
    {"wait", cmd_wait, "wait for a job, with a progress bar; exit 1 if any item failed"},
    {"cancel", cmd_cancel, "cancel a job"},
    {"results", cmd_results, "list the finished items of a job"},
    {"workers", cmd_workers, "the workers a coordinator knows (--json)"},
    {"bench", cmd_bench, "throughput of a cluster on a synthetic job (--local starts one)"},
    {"inspect", cmd_inspect, "list a diffusers model folder's components, sizes and configs"},
    {"tokenize", cmd_tokenize, "print the CLIP token ids of prompts"},
    {"eval", cmd_eval, "run one network forward on safetensors inputs (text, unet, vae-decode, vae-encode)"},
    {"random-model", cmd_random_model, "write a diffusers SDXL folder with random weights (sdxl-base, sdxl-refiner, tiny)"},
    {"devices", cmd_devices, "list the compute backends and devices of this build"},
};

void cli_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sdxl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl <command> [options]\n\n"
                 "Stable Diffusion XL 1.0 inference in C and CUDA.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'sdxl <command> --help' describes a command.\n"
                 "exit codes: 0 success, 1 failure, 2 usage error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "sdxl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
