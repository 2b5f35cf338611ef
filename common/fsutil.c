/* fsutil.c - see fsutil.h. */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *sd_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *r = malloc(la + lb + 2);
    if (!r)
        return NULL;
    memcpy(r, a, la);
    size_t pos = la;
    if (la && a[la - 1] != '/')
        r[pos++] = '/';
    memcpy(r + pos, b, lb + 1);
    return r;
}

int sd_path_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

int sd_path_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

sd_status sd_read_file(const char *path, char **out, size_t *len, sd_error *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return sd_fail(err, SD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, fp);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (!buf)
        return sd_fail(err, SD_ERR_NOMEM, "%s: out of memory reading file", path);
    if (bad) {
        free(buf);
        return sd_fail(err, SD_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return SD_OK;
}

sd_status sd_atomic_open(sd_atomic_file *af, const char *path, sd_error *err)
{
    memset(af, 0, sizeof *af);
    af->path = strdup(path);
    if (!af->path || asprintf(&af->tmp, "%s.tmp.%ld", path, (long)getpid()) < 0) {
        free(af->path);
        return sd_fail(err, SD_ERR_NOMEM, "%s: out of memory", path);
    }
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        sd_status st = sd_fail(err, SD_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(errno));
        free(af->path);
        free(af->tmp);
        memset(af, 0, sizeof *af);
        return st;
    }
    return SD_OK;
}

static void fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

sd_status sd_atomic_commit(sd_atomic_file *af, sd_error *err)
{
    sd_status st = SD_OK;
    if (fflush(af->fp) != 0 || (!af->no_sync && fsync(fileno(af->fp)) != 0))
        st = sd_fail(err, SD_ERR_IO, "%s: write failed: %s", af->tmp, strerror(errno));
    if (fclose(af->fp) != 0 && st == SD_OK)
        st = sd_fail(err, SD_ERR_IO, "%s: close failed: %s", af->tmp, strerror(errno));
    af->fp = NULL;
    if (st == SD_OK && rename(af->tmp, af->path) != 0)
        st = sd_fail(err, SD_ERR_IO, "%s: rename to %s failed: %s", af->tmp, af->path, strerror(errno));
    if (st != SD_OK)
        unlink(af->tmp);
    else if (!af->no_sync)
        fsync_parent_dir(af->path);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
    return st;
}

void sd_atomic_abort(sd_atomic_file *af)
{
    if (af->fp)
        fclose(af->fp);
    if (af->tmp)
        unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
}

sd_status sd_write_file_atomic(const char *path, const void *data, size_t len, sd_error *err)
{
    sd_atomic_file af;
    SD_TRY(sd_atomic_open(&af, path, err));
    if (len && fwrite(data, 1, len, af.fp) != len) {
        int e = errno; /* before the abort's unlink can change it */
        sd_atomic_abort(&af);
        return sd_fail(err, SD_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return sd_atomic_commit(&af, err);
}

sd_status sd_mkdirs(const char *path, sd_error *err)
{
    char *p = strdup(path);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                sd_status st = sd_fail(err, SD_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
                free(p);
                return st;
            }
            *s = '/';
        }
    }
    sd_status st = SD_OK;
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        st = sd_fail(err, SD_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
    free(p);
    return st;
}

const char *sd_path_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}
