/* cmd_keys.c - `sdxl curve-keys DIR NAME...`: a CURVE key pair (Z85) per NAME,
 * DIR/NAME.public and DIR/NAME.secret (0600), made by libzmq's own
 * zmq_curve_keypair: what a deployment needs for the coordinator (server),
 * its workers and its clients (deploy/slurm makes a set per allocation). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/fsutil.h"
#include "coordinator/cli/cli.h"

static int write_key(const char *dir, const char *name, const char *ext, const char *key, mode_t mode)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        cli_errorf("curve-keys", "%s: %s%s", path, strerror(errno),
                   errno == EEXIST ? " (an existing key is never overwritten)" : "");
        return 1;
    }
    int bad = write(fd, key, strlen(key)) != (ssize_t)strlen(key);
    bad |= close(fd) != 0;
    if (bad)
        cli_errorf("curve-keys", "%s: write failed: %s", path, strerror(errno));
    return bad;
}

int cmd_curve_keys(int argc, char **argv)
{
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: sdxl curve-keys DIR NAME...\n\n"
               "Writes a CURVE key pair per NAME: DIR/NAME.public and DIR/NAME.secret (mode 0600), Z85 text, as\n"
               "sdxl-coordinator --curve-secret, sdxl-worker --curve-* and SDXL_CURVE_* take them. DIR is made\n"
               "when missing; an existing key is never overwritten.\n");
        return 0;
    }
    if (argc < 2) {
        cli_errorf("curve-keys", "usage: sdxl curve-keys DIR NAME... (see --help)");
        return 2;
    }
    sd_error err = {0};
    if (sd_mkdirs(argv[0], &err) != SD_OK) {
        cli_errorf("curve-keys", "%s", err.msg);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (!argv[i][0] || strchr(argv[i], '/')) {
            cli_errorf("curve-keys", "'%s' is not a key name (no '/', not empty)", argv[i]);
            return 2;
        }
        char pub[41], sec[41];
        if (zmq_curve_keypair(pub, sec) != 0) {
            cli_errorf("curve-keys", "zmq_curve_keypair: %s (libzmq built without CURVE?)", zmq_strerror(zmq_errno()));
            return 1;
        }
        if (write_key(argv[0], argv[i], "secret", sec, 0600) || write_key(argv[0], argv[i], "public", pub, 0644))
            return 1;
    }
    return 0;
}
