/* prompt_file.c - see prompt_file.h. */
#include "coordinator/cli/client/prompt_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/gen_params.h"
#include "common/model_spec.h"
#include "common/job_spec.h"
#include "coordinator/cli/cli.h"

int prompt_file_open(prompt_file *pf, const char *path, const json_t *defaults, long long per_prompt,
                     uint64_t base_seed)
{
    memset(pf, 0, sizeof *pf);
    pf->path = path;
    pf->defaults = defaults;
    pf->per_prompt = per_prompt;
    pf->base_seed = base_seed;
    size_t l = strlen(path);
    const char *name_end = l > 3 && !strcmp(path + l - 3, ".gz") ? path + l - 3 : path + l;
    pf->jsonl = name_end - path > 6 && !strncmp(name_end - 6, ".jsonl", 6);
    pf->gz = gzopen(path, "rb");
    if (!pf->gz) {
        cli_errorf("submit", "%s: %s", path, errno ? strerror(errno) : "cannot open");
        return 1;
    }
    gzbuffer(pf->gz, 1 << 17);
    pf->cap = 1 << 16;
    pf->buf = malloc(pf->cap);
    if (!pf->buf) {
        cli_errorf("submit", "out of memory");
        return 1;
    }
    return 0;
}

/* The next line (NUL-terminated in place, without its newline or CR) in
 * *line: 1; 0 at the end; negative after printing why. */
static int next_line(prompt_file *pf, char **line)
{
    for (;;) {
        char *nl = pf->len > pf->pos ? memchr(pf->buf + pf->pos, '\n', pf->len - pf->pos) : NULL;
        if (nl || (pf->eof && pf->len > pf->pos)) {
            char *start = pf->buf + pf->pos;
            size_t l = nl ? (size_t)(nl - start) : pf->len - pf->pos;
            pf->pos += l + (nl ? 1 : 0);
            pf->lineno++;
            /* a NUL byte would end the prompt (and the file) there, silently */
            if (memchr(start, '\0', l)) {
                cli_errorf("submit", "%s:%lld: a NUL byte in the prompt file", pf->path, pf->lineno);
                return -2;
            }
            start[l] = '\0';
            if (l && start[l - 1] == '\r')
                start[l - 1] = '\0';
            *line = start;
            return 1;
        }
        if (pf->eof)
            return 0;
        /* keep the unread part, make room, read more */
        memmove(pf->buf, pf->buf + pf->pos, pf->len - pf->pos);
        pf->len -= pf->pos;
        pf->pos = 0;
        if (pf->cap - pf->len < 4096) {
            if (pf->cap >= (size_t)64 << 20) {
                cli_errorf("submit", "%s:%lld: a line longer than 64 MiB", pf->path, pf->lineno + 1);
                return -2;
            }
            char *nb = realloc(pf->buf, pf->cap * 2);
            if (!nb) {
                cli_errorf("submit", "out of memory");
                return -1;
            }
            pf->buf = nb;
            pf->cap *= 2;
        }
        int n = gzread(pf->gz, pf->buf + pf->len, (unsigned)(pf->cap - pf->len - 1));
        if (n < 0) {
            int zerr;
            const char *msg = gzerror(pf->gz, &zerr);
            cli_errorf("submit", "%s: %s", pf->path, zerr == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (n == 0)
            pf->eof = 1;
        pf->len += (size_t)n;
    }
}

/* the own keys of the next non-empty line in pf->base: 1, 0 at the end, or minus an exit code */
static int next_base(prompt_file *pf)
{
    char *line;
    int r;
    while ((r = next_line(pf, &line)) == 1 && !line[0]) {
    }
    if (r <= 0)
        return r;
    if (!pf->jsonl) {
        pf->base = json_pack("{s:s}", "prompt", line);
        if (!pf->base) {
            cli_errorf("submit", "%s:%lld: not valid UTF-8", pf->path, pf->lineno);
            return -2;
        }
        return 1;
    }
    json_error_t je;
    pf->base = json_loads(line, 0, &je);
    if (!json_is_object(pf->base) || !json_is_string(json_object_get(pf->base, "prompt"))) {
        cli_errorf("submit", "%s:%lld: not a JSON object with a \"prompt\" string", pf->path, pf->lineno);
        return -2;
    }
    if (json_object_get(pf->base, "format")) {
        cli_errorf("submit", "%s:%lld: key 'format' is job-wide: give --format instead", pf->path, pf->lineno);
        return -2;
    }
    return 1;
}

/* The LoRAs and VAE an item names exist here (the workers read the same
 * paths: a shared filesystem), and their list parses. */
static sd_status check_files(const prompt_file *pf, json_t *it, sd_error *err)
{
    json_t *p = sd_job_item_params(pf->defaults, it);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_gen_params g;
    sd_status st = sd_gen_params_from_json(&g, p, err);
    sd_model_spec none, with;
    memset(&none, 0, sizeof none);
    if (st == SD_OK && (g.loras || g.vae))
        st = sd_model_spec_for_item(&none, g.loras, g.vae, &with, err);
    json_decref(p);
    return st;
}

int prompt_file_next(prompt_file *pf, json_t **item)
{
    if (!pf->base || pf->k == pf->per_prompt) {
        json_decref(pf->base);
        pf->base = NULL;
        pf->k = 0;
        int r = next_base(pf);
        if (r <= 0)
            return r;
    }
    json_t *it = json_copy(pf->base);
    /* the line's seed + k, else the base seed + the item's index (64 bits,
     * as torch takes them; past 2^64 - 1 is refused, not wrapped) */
    json_t *seed = json_object_get(pf->base, "seed");
    uint64_t first, add = seed ? (uint64_t)pf->k : (uint64_t)pf->items;
    if (seed && sd_seed_from_json(seed, &first)) {
        cli_errorf("submit", "%s:%lld: key 'seed': must be an integer from 0 to 18446744073709551615", pf->path,
                   pf->lineno);
        json_decref(it);
        return -2;
    }
    if (!seed)
        first = pf->base_seed;
    if (first > UINT64_MAX - add) {
        cli_errorf("submit", "%s:%lld: seed %llu + %llu is past 2^64 - 1", pf->path, pf->lineno,
                   (unsigned long long)first, (unsigned long long)add);
        json_decref(it);
        return -2;
    }
    json_object_set_new(it, "seed", sd_seed_to_json(first + add));
    /* every key checked now, as the worker decodes it: a bad value is
     * refused here, naming line and key, not after three attempts */
    sd_error err = {0};
    if (!pf->checked && (sd_job_item_validate(pf->defaults, it, &err) != SD_OK || check_files(pf, it, &err) != SD_OK)) {
        cli_errorf("submit", "%s:%lld: %s", pf->path, pf->lineno, err.msg);
        json_decref(it);
        return -2;
    }
    pf->k++;
    pf->items++;
    *item = it;
    return 1;
}

int prompt_file_rewind(prompt_file *pf)
{
    if (gzrewind(pf->gz) != 0) {
        cli_errorf("submit", "%s: cannot read it again from the start", pf->path);
        return 1;
    }
    json_decref(pf->base);
    pf->base = NULL;
    pf->k = pf->lineno = pf->items = 0;
    pf->checked = 1;
    pf->pos = pf->len = 0;
    pf->eof = 0;
    return 0;
}

void prompt_file_close(prompt_file *pf)
{
    json_decref(pf->base);
    pf->base = NULL;
    if (pf->gz)
        gzclose(pf->gz);
    pf->gz = NULL;
    free(pf->buf);
    pf->buf = NULL;
}
