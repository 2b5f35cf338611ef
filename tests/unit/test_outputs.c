/* test_outputs.c - a job's output folder (coordinator/outputs.h): atomic
 * item files, WebDataset shards assembled from staged items (read back here
 * with a ustar reader of the test's own), what a crashed writer leaves
 * swept, and metadata.jsonl of the files layout. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "coordinator/outputs.h"
#include "tests/test_util.h"

static int all_done(void *user, int idx)
{
    (void)user;
    return idx == 1 ? 2 : 1; /* item 1 failed: no sample */
}

static int exists(const char *dir, const char *rel)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

/* ustar members: name (offset 0, 100 bytes), size (octal at 124), data in
 * 512-byte blocks; two zero blocks end the archive */
static int tar_names(const char *path, char names[][100], size_t sizes[], int max)
{
    char *data;
    size_t len;
    sd_error err = {0};
    cr_assert_eq(sd_read_file(path, &data, &len, &err), SD_OK, "%s", err.msg);
    int n = 0;
    size_t off = 0;
    while (off + 512 <= len && data[off] && n < max) {
        memcpy(names[n], data + off, 100);
        names[n][99] = '\0';
        sizes[n] = strtoull(data + off + 124, NULL, 8);
        off += 512 + (sizes[n] + 511) / 512 * 512;
        n++;
    }
    cr_assert(off + 1024 <= len, "no end-of-archive blocks");
    free(data);
    return n;
}

Test(outputs, a_shard_holds_its_done_items_and_its_staging_is_cleared)
{
    char *dir = tu_tmpdir();
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i, s:[{},{},{}]}", "out", dir, "format", "png", "layout",
                             "webdataset", "shard_size", 2, "items");
    sd_outputs o;
    outputs_from_spec(&o, spec);
    cr_assert_eq(o.total, 3);
    int first, last;
    cr_assert_eq(outputs_shard_of(&o, 2, &first, &last), 1);
    cr_assert_eq(first, 2);
    cr_assert_eq(last, 3);
    sd_error err = {0};
    json_t *meta = json_pack("{s:s}", "prompt", "p");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(outputs_write_item(&o, i, "IMG", 3, meta, &err), SD_OK, "%s", err.msg);
    cr_assert(exists(dir, ".staging/00000000.png") && exists(dir, ".staging/00000000.json"));
    cr_assert(outputs_item_exists(&o, 0));
    int written = 0;
    cr_assert_eq(outputs_write_shard(&o, 0, all_done, NULL, &written, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(written, 1);
    char path[4096], names[8][100];
    size_t sizes[8];
    snprintf(path, sizeof path, "%s/000000.tar", dir);
    int n = tar_names(path, names, sizes, 8);
    cr_assert_eq(n, 2, "item 1 failed: only item 0's two files");
    cr_assert_str_eq(names[0], "00000000.png");
    cr_assert_eq(sizes[0], 3);
    cr_assert_str_eq(names[1], "00000000.json");
    cr_assert(!exists(dir, ".staging/00000000.png") && !exists(dir, ".staging/00000001.json"));
    cr_assert(outputs_item_exists(&o, 1), "a written shard holds the outcome of each of its items");
    /* written once: a second call (a restarted coordinator) leaves it */
    cr_assert_eq(outputs_write_shard(&o, 0, all_done, NULL, &written, &err), SD_OK);
    cr_assert_eq(written, 0);
    /* a temp file of a killed writer (another pid) is swept; staging stays while shard 1 is open */
    snprintf(path, sizeof path, "%s/.staging/00000002.json.tmp.999999", dir);
    tu_write(path, "x", 1);
    outputs_sweep(&o);
    cr_assert(!exists(dir, ".staging/00000002.json.tmp.999999"));
    cr_assert(exists(dir, ".staging/00000002.png"));
    cr_assert_eq(outputs_flush(&o, all_done, NULL, &err), SD_OK, "%s", err.msg);
    outputs_sweep(&o);
    cr_assert(exists(dir, "000001.tar"));
    cr_assert(!exists(dir, ".staging"), "the empty staging folder is removed");
    json_decref(meta);
    json_decref(spec);
    tu_rmrf(dir);
    free(dir);
}

Test(outputs, the_files_layout_writes_items_and_metadata_jsonl)
{
    char *dir = tu_tmpdir();
    json_t *spec = json_pack("{s:s, s:s, s:s, s:[{},{}]}", "out", dir, "format", "webp", "layout", "files", "items");
    sd_outputs o;
    outputs_from_spec(&o, spec);
    cr_assert_str_eq(o.ext, "webp");
    sd_error err = {0};
    json_t *meta = json_pack("{s:s}", "prompt", "p");
    cr_assert_eq(outputs_write_item(&o, 1, "IMG", 3, meta, &err), SD_OK, "%s", err.msg);
    cr_assert(exists(dir, "00000001.webp") && exists(dir, "00000001.json"));
    cr_assert(!outputs_item_exists(&o, 0));
    json_t *done = json_pack("[{s:i, s:{s:s}}]", "idx", 1, "info", "prompt", "p");
    cr_assert_eq(outputs_write_metadata(&o, done, &err), SD_OK, "%s", err.msg);
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/metadata.jsonl", dir);
    cr_assert_eq(sd_read_file(path, &text, &len, &err), SD_OK);
    json_error_t je;
    json_t *line = json_loadb(text, len, 0, &je);
    cr_assert_not_null(line, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(line, "file")), "00000001.webp");
    cr_assert_str_eq(json_string_value(json_object_get(line, "prompt")), "p");
    cr_assert_eq(text[len - 1], '\n');
    free(text);
    json_decref(line);
    json_decref(done);
    json_decref(meta);
    json_decref(spec);
    tu_rmrf(dir);
    free(dir);
}
