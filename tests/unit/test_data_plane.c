/* test_data_plane.c - outputs held worker to worker (worker/daemon/data_plane.h)
 * over real ZeroMQ sockets on loopback: text conditioning is forgotten once
 * fetched; latents are kept until released, and a server started again on
 * the same spool (a restarted unet worker) serves them; a spool's leftover
 * temp files go at start; a spool that cannot be written holds in memory.
 * And the marker that lets a final worker write into
 * a job's folder (common/output_item.h). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/fsutil.h"
#include "common/output_item.h"
#include "tests/test_util.h"
#include "worker/daemon/data_plane.h"

/* one fetcher per test: its connections are kept across fetches, and
 * closed before the context ends */
static sd_data_fetcher *fetcher;

static sd_status fetch(void *ctx, const char *ep, const char *key, void **blob, size_t *len)
{
    sd_error err = {0};
    if (!fetcher)
        cr_assert_eq(sd_data_fetcher_new(&fetcher, ctx, NULL, NULL, &err), SD_OK);
    return sd_data_fetch(fetcher, ep, NULL, key, 2000, blob, len, &err);
}

static void ctx_end(void *ctx)
{
    sd_data_fetcher_free(fetcher);
    fetcher = NULL;
    zmq_ctx_term(ctx);
}

static void start(sd_data_server **s, void *ctx, int keep, const char *spool, size_t cap, char *ep, size_t eplen)
{
    sd_error err = {0};
    sd_data_server_opts o = {"tcp://127.0.0.1:5555", cap, keep, spool, NULL};
    cr_assert_eq(sd_data_server_start(s, ctx, &o, ep, eplen, &err), SD_OK, "%s", err.msg);
}

Test(data_plane, text_conditioning_is_forgotten_once_fetched)
{
    void *ctx = zmq_ctx_new();
    sd_data_server *s;
    char ep[128];
    sd_error err = {0};
    start(&s, ctx, 0, NULL, 4, ep, sizeof ep);
    cr_assert_eq(sd_data_server_hold(s, "job/1", "abc", 3, NULL, &err), SD_OK);
    void *blob = NULL;
    size_t len = 0;
    cr_assert_eq(fetch(ctx, ep, "job/1", &blob, &len), SD_OK);
    cr_assert(len == 3 && !memcmp(blob, "abc", 3));
    free(blob);
    cr_assert_eq(fetch(ctx, ep, "job/1", &blob, &len), SD_ERR_MISSING, "a second fetch finds it gone");
    /* past capacity the oldest goes */
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "job/%d", 10 + i);
        cr_assert_eq(sd_data_server_hold(s, key, "x", 1, NULL, &err), SD_OK);
    }
    cr_assert_eq(fetch(ctx, ep, "job/10", &blob, &len), SD_ERR_MISSING);
    cr_assert_eq(fetch(ctx, ep, "job/14", &blob, &len), SD_OK);
    free(blob);
    sd_data_server_stop(s);
    ctx_end(ctx);
}

Test(data_plane, latents_are_kept_until_released_and_survive_a_restart)
{
    void *ctx = zmq_ctx_new();
    char *dir = tu_tmpdir(), spool[512], ep[128];
    snprintf(spool, sizeof spool, "%s/spool/model", dir);
    sd_data_server *s;
    sd_error err = {0};
    /* memory for 2: the third and later are served from the spool */
    start(&s, ctx, 1, spool, 2, ep, sizeof ep);
    for (int i = 0; i < 4; i++) {
        char key[16], val[16];
        snprintf(key, sizeof key, "job/%d", i);
        snprintf(val, sizeof val, "lat%d", i);
        cr_assert_eq(sd_data_server_hold(s, key, val, strlen(val), NULL, &err), SD_OK, "%s", err.msg);
    }
    void *blob = NULL;
    size_t len = 0;
    for (int round = 0; round < 2; round++) /* fetched twice: still there (its final worker may die) */
        for (int i = 0; i < 4; i++) {
            char key[16], val[16];
            snprintf(key, sizeof key, "job/%d", i);
            snprintf(val, sizeof val, "lat%d", i);
            cr_assert_eq(fetch(ctx, ep, key, &blob, &len), SD_OK, "%s round %d", key, round);
            cr_assert(len == strlen(val) && !memcmp(blob, val, len));
            free(blob);
        }
    sd_data_server_release(s, "job/0");
    cr_assert_eq(fetch(ctx, ep, "job/0", &blob, &len), SD_ERR_MISSING, "released: gone from memory and disk");
    sd_data_server_stop(s);
    /* a leftover of a write cut short, and the server again on the same spool */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/job.9.tmp.123", spool);
    cr_assert_eq(sd_write_file_atomic(tmp, "torn", 4, &err), SD_OK);
    start(&s, ctx, 1, spool, 2, ep, sizeof ep);
    cr_assert(!sd_path_exists(tmp), "the temp file is swept at start");
    cr_assert_eq(fetch(ctx, ep, "job/3", &blob, &len), SD_OK, "served again after a restart");
    cr_assert(len == 4 && !memcmp(blob, "lat3", 4));
    free(blob);
    cr_assert_eq(fetch(ctx, ep, "job/0", &blob, &len), SD_ERR_MISSING);
    sd_data_server_stop(s);
    sd_data_spool_remove(spool);
    char parent[520];
    snprintf(parent, sizeof parent, "%s/spool", dir);
    cr_assert(!sd_path_exists(spool) && !sd_path_exists(parent), "an own spool is removed whole");
    ctx_end(ctx);
    tu_rmrf(dir);
    free(dir);
}

Test(data_plane, the_marker_says_whether_a_folder_is_the_coordinators)
{
    char *dir = tu_tmpdir(), token[33], out[512];
    sd_error err = {0};
    snprintf(out, sizeof out, "%s/out", dir);
    cr_assert(!sd_output_marker_matches(out, "job-1", "00000000000000000000000000000000"), "no marker: no");
    cr_assert_eq(sd_output_marker_write(out, "job-1", token, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(strlen(token), 32);
    cr_assert(sd_output_marker_matches(out, "job-1", token));
    cr_assert(!sd_output_marker_matches(out, "job-2", token), "another job's marker");
    char other[33];
    memcpy(other, token, sizeof other);
    other[0] = other[0] == 'a' ? 'b' : 'a';
    cr_assert(!sd_output_marker_matches(out, "job-1", other), "another token (another coordinator's folder)");
    cr_assert_eq(sd_output_item_write(out, 1, 7, "png", "img", 3, "{}", 1, &err), SD_OK, "%s", err.msg);
    cr_assert(sd_output_item_exists(out, 1, 7, "png") && !sd_output_item_exists(out, 0, 7, "png"));
    tu_rmrf(dir);
    free(dir);
}

/* A spool that cannot be written (here its folder replaced by a file: a full
 * or failing disk alike) does not fail the hold: the latents are held in
 * memory, served from there, and the caller is told why they are not
 * spooled; once the folder is back they are spooled again. */
Test(data_plane, a_failing_spool_holds_in_memory)
{
    void *ctx = zmq_ctx_new();
    char *dir = tu_tmpdir(), spool[512], ep[128];
    snprintf(spool, sizeof spool, "%s/spool", dir);
    sd_data_server *s;
    sd_error err = {0}, serr = {0};
    start(&s, ctx, 1, spool, 4, ep, sizeof ep);
    cr_assert_eq(rmdir(spool), 0);
    tu_write(spool, "not a folder", 12);
    cr_assert_eq(sd_data_server_hold(s, "job/1", "lat1", 4, &serr, &err), SD_OK, "%s", err.msg);
    cr_assert_neq(serr.code, SD_OK, "the caller learns the spool failed");
    cr_assert(strstr(serr.msg, "job/1") && strstr(serr.msg, "held in memory only"), "%s", serr.msg);
    void *blob = NULL;
    size_t len = 0;
    cr_assert_eq(fetch(ctx, ep, "job/1", &blob, &len), SD_OK, "served from memory");
    cr_assert(len == 4 && !memcmp(blob, "lat1", 4));
    free(blob);
    cr_assert_eq(unlink(spool), 0);
    cr_assert_eq(sd_mkdirs(spool, &err), SD_OK);
    cr_assert_eq(sd_data_server_hold(s, "job/2", "lat2", 4, &serr, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(serr.code, SD_OK, "%s", serr.msg);
    char path[600];
    snprintf(path, sizeof path, "%s/job.2", spool);
    cr_assert(sd_path_exists(path), "spooled again once the folder is back");
    sd_data_server_stop(s);
    ctx_end(ctx);
    tu_rmrf(dir);
    free(dir);
}
