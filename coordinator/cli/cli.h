/* cli.h - the subcommands of the user CLI `sdxl`. Each takes the arguments
 * after its name and returns a process exit code: 0 success, 1 failure,
 * 2 usage error. Data goes to stdout, diagnostics to stderr.
 *
 * Two binaries carry them: `sdxl` holds the clients of a coordinator
 * (cli/client/: submit, status, ...; they link no engine and no CUDA) and
 * starts `sdxl-engine`, beside it, for the in-process commands (cli/engine/:
 * generate, eval, ...), so a client command starts in milliseconds. */
#ifndef SDXL_COORDINATOR_CLI_H
#define SDXL_COORDINATOR_CLI_H

/* in-process commands (coordinator/cli/engine/, the sdxl-engine binary) */
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_random_model(int argc, char **argv);
int cmd_generate(int argc, char **argv);
/* clients of a coordinator (coordinator/cli/client/, the sdxl binary) */
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_results(int argc, char **argv);
int cmd_workers(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_curve_keys(int argc, char **argv);
int cmd_top(int argc, char **argv);

/* Prints "sdxl <cmd>: <msg>" to stderr. */
void cli_errorf(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
