/* main_sdxl.c - entry point of the user CLI `sdxl`: dispatches to the
 * subcommands. The clients of a coordinator run here; the in-process
 * commands (those that load a model) run in `sdxl-engine`, the binary beside
 * this one, which this process becomes (execv, same arguments), so `sdxl
 * status` or `sdxl --help` never load OpenBLAS, CUDA or the engine. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **); /* NULL: an in-process command of sdxl-engine */
    const char *summary;
} commands[] = {
    {"generate", NULL, "prompt to image in one process (text, unet and final stages)"},
    {"submit", cmd_submit, "submit a dataset job (prompt file) to a coordinator"},
    {"status", cmd_status, "jobs and their progress (--json)"},
    {"wait", cmd_wait, "wait for a job, with a progress bar; exit 1 if any item failed"},
    {"cancel", cmd_cancel, "cancel a job (a finished job stays as it is)"},
    {"retry", cmd_retry, "retry a job's failed and cancelled items"},
    {"results", cmd_results, "list the finished items of a job"},
    {"workers", cmd_workers, "the workers a coordinator knows (--json)"},
    {"top", cmd_top, "a live view of a running cluster: jobs, stages, workers"},
    {"bench", cmd_bench, "throughput of a cluster on a synthetic job (--local starts one)"},
    {"curve-keys", cmd_curve_keys, "write CURVE key pairs for a coordinator, its workers and clients"},
    {"inspect", NULL, "list a diffusers model folder's components, sizes and configs"},
    {"tokenize", NULL, "print the CLIP token ids of prompts"},
    {"eval", NULL, "run one network forward on safetensors inputs (text, unet, vae-decode, vae-encode)"},
    {"random-model", NULL, "write a diffusers SDXL folder with random weights (sdxl-base, sdxl-refiner, tiny)"},
    {"devices", NULL, "list the compute backends and devices of this build"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl <command> [options]\n\n"
                 "Stable Diffusion XL 1.0 inference in C and CUDA.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'sdxl <command> --help' describes a command.\n"
                 "exit codes: 0 success, 1 failure, 2 usage error\n");
}

/* Becomes sdxl-engine (beside this binary) for an in-process command. */
static int run_engine(char **argv)
{
    char self[PATH_MAX], engine[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "sdxl: /proc/self/exe: %s: cannot find sdxl-engine for '%s'\n", strerror(errno), argv[1]);
        return 1;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    snprintf(engine, sizeof engine, "%.*s/sdxl-engine", slash ? (int)(slash - self) : 1, slash ? self : ".");
    argv[0] = engine;
    execv(engine, argv);
    fprintf(stderr, "sdxl %s: cannot start %s: %s (it is built beside sdxl by make)\n", argv[1], engine,
            strerror(errno));
    return 1;
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
            return commands[i].fn ? commands[i].fn(argc - 2, argv + 2) : run_engine(argv);
    fprintf(stderr, "sdxl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
