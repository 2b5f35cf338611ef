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

/* the done items as the store pages them: every item but 1, of 3 */
static json_t *done_but_1(void *user, int after, int limit)
{
    (void)user;
    json_t *a = json_array();
    for (int i = after + 1; i < 3 && (int)json_array_size(a) < limit; i++)
        if (i != 1)
            json_array_append_new(a, json_pack("{s:i}", "idx", i));
    return a;
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
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i, s:i}", "out", dir, "format", "png", "layout",
                             "webdataset", "shard_size", 2, "total", 3);
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
    cr_assert_eq(outputs_flush(&o, all_done, done_but_1, NULL, &err), SD_OK, "%s", err.msg);
    outputs_sweep(&o);
    cr_assert(exists(dir, "000001.tar"));
    cr_assert(!exists(dir, ".staging"), "the empty staging folder is removed");
    json_decref(meta);
    json_decref(spec);
    tu_rmrf(dir);
    free(dir);
}

static int state_of_item[4];
static int by_state(void *user, int idx)
{
    (void)user;
    return state_of_item[idx];
}

/* An item retried after its shard was written (a cancelled job submitted
 * again, `sdxl retry`): the shard takes it, keeping what it held; a shard
 * with no sample is not written at all. */
Test(outputs, a_written_shard_takes_an_item_made_after_it)
{
    char *dir = tu_tmpdir();
    json_t *spec = json_pack("{s:s, s:s, s:i, s:i}", "out", dir, "layout", "webdataset", "shard_size", 2, "total", 4);
    sd_outputs o;
    outputs_from_spec(&o, spec);
    sd_error err = {0};
    json_t *meta = json_pack("{s:s}", "prompt", "p");
    int written = -1;
    state_of_item[2] = state_of_item[3] = 2; /* cancelled */
    cr_assert_eq(outputs_write_shard(&o, 1, by_state, NULL, &written, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(written, 0);
    cr_assert(!exists(dir, "000001.tar"), "a shard of cancelled items only is not written");
    state_of_item[0] = 1, state_of_item[1] = 2;
    cr_assert_eq(outputs_write_item(&o, 0, "IMG0", 4, meta, &err), SD_OK);
    cr_assert_eq(outputs_write_shard(&o, 0, by_state, NULL, &written, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(written, 1);
    /* item 1 retried and made: the shard is written again with both */
    state_of_item[1] = 1;
    cr_assert_eq(outputs_write_item(&o, 1, "IMG-1", 5, meta, &err), SD_OK);
    cr_assert_eq(outputs_write_shard(&o, 0, by_state, NULL, &written, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(written, 1);
    char path[4096], names[8][100];
    size_t sizes[8];
    snprintf(path, sizeof path, "%s/000000.tar", dir);
    int n = tar_names(path, names, sizes, 8);
    cr_assert_eq(n, 4, "both items' two files: %d members", n);
    cr_assert_str_eq(names[0], "00000000.png");
    cr_assert_eq(sizes[0], 4, "the sample it held is kept as it was");
    cr_assert_str_eq(names[2], "00000001.png");
    cr_assert_eq(sizes[2], 5);
    cr_assert(!exists(dir, ".staging/00000001.png"));
    /* nothing new: left as it is */
    cr_assert_eq(outputs_write_shard(&o, 0, by_state, NULL, &written, &err), SD_OK);
    cr_assert_eq(written, 0);
    json_decref(meta);
    json_decref(spec);
    tu_rmrf(dir);
    free(dir);
}

/* the done items as the store pages them: all of them in the first page */
static json_t *one_page(void *user, int after, int limit)
{
    (void)limit;
    return after < 0 ? json_incref(user) : json_array();
}

/* a page of `limit` made-up done items after `after`, up to *user items */
static json_t *counted_pages(void *user, int after, int limit)
{
    int total = *(int *)user;
    json_t *a = json_array();
    for (int i = after + 1; i < total && (int)json_array_size(a) < limit; i++)
        json_array_append_new(a, json_pack("{s:i, s:{s:i}}", "idx", i, "info", "seed", i));
    return a;
}

Test(outputs, metadata_jsonl_is_written_page_by_page_with_every_item_once)
{
    char *dir = tu_tmpdir();
    json_t *spec = json_pack("{s:s, s:s, s:i}", "out", dir, "layout", "files", "total", 10000);
    sd_outputs o;
    outputs_from_spec(&o, spec);
    sd_error err = {0};
    int total = 10000; /* more than two pages of 4096 */
    cr_assert_eq(outputs_write_metadata(&o, counted_pages, &total, &err), SD_OK, "%s", err.msg);
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/metadata.jsonl", dir);
    cr_assert_eq(sd_read_file(path, &text, &len, &err), SD_OK);
    int lines = 0, in_order = 1;
    for (char *l = text, *nl; (nl = strchr(l, '\n')); l = nl + 1) {
        json_error_t je;
        json_t *j = json_loadb(l, (size_t)(nl - l), 0, &je);
        in_order &= j && json_integer_value(json_object_get(j, "seed")) == lines;
        json_decref(j);
        lines++;
    }
    cr_assert_eq(lines, total, "%d lines for %d items", lines, total);
    cr_assert(in_order, "each item once, in order, across page boundaries");
    free(text);
    json_decref(spec);
    tu_rmrf(dir);
    free(dir);
}

Test(outputs, the_files_layout_writes_items_and_metadata_jsonl)
{
    char *dir = tu_tmpdir();
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i}", "out", dir, "format", "webp", "layout", "files", "total", 2);
    sd_outputs o;
    outputs_from_spec(&o, spec);
    cr_assert_str_eq(o.ext, "webp");
    sd_error err = {0};
    json_t *meta = json_pack("{s:s}", "prompt", "p");
    cr_assert_eq(outputs_write_item(&o, 1, "IMG", 3, meta, &err), SD_OK, "%s", err.msg);
    cr_assert(exists(dir, "00000001.webp") && exists(dir, "00000001.json"));
    cr_assert(!outputs_item_exists(&o, 0));
    json_t *done = json_pack("[{s:i, s:{s:s}}]", "idx", 1, "info", "prompt", "p");
    cr_assert_eq(outputs_write_metadata(&o, one_page, done, &err), SD_OK, "%s", err.msg);
    char path[4096], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/metadata.jsonl", dir);
    cr_assert_eq(sd_read_file(path, &text, &len, &err), SD_OK);
    json_error_t je;
    json_t *line = json_loadb(text, len, 0, &je);
    cr_assert_not_null(line, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(line, "file_name")), "00000001.webp");
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
