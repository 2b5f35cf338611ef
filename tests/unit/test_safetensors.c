/* test_safetensors.c - writer/reader round trip and, for every rule of the
 * format, a file that breaks it: each must be refused with a message naming
 * the file and (where there is one) the tensor, never a crash. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
#include "common/safetensors.h"
#include "tests/test_util.h"

/* Builds a safetensors image from a header string and n data bytes. */
static size_t make_image(unsigned char *buf, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + hl + i] = (unsigned char)i;
    return 8 + hl + data_len;
}

static void expect_reject(const char *header, size_t data_len, const char *needle)
{
    unsigned char buf[4096];
    size_t n = make_image(buf, header, data_len);
    sd_st_file *f = (sd_st_file *)0x1;
    sd_error err = {0};
    sd_status st = sd_st_parse(&f, buf, n, "bad.safetensors", &err);
    cr_assert_neq(st, SD_OK, "accepted: %s", header);
    cr_assert_null(f);
    cr_assert(strstr(err.msg, "bad.safetensors") != NULL, "message lacks the file: %s", err.msg);
    cr_assert(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
}

Test(safetensors, roundtrip_with_metadata)
{
    char *dir = tu_tmpdir();
    char *path = sd_path_join(dir, "t.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3c00, 0x4000, 0x4200};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    sd_error err = {0};
    sd_st_writer *w = sd_st_writer_new();
    cr_assert_eq(sd_st_writer_add(w, "z.weight", SD_DTYPE_F32, 2, sa, a, &err), SD_OK);
    cr_assert_eq(sd_st_writer_add_copy(w, "a.bias", SD_DTYPE_F16, 1, sb, b, &err), SD_OK);
    cr_assert_neq(sd_st_writer_add(w, "a.bias", SD_DTYPE_F16, 1, sb, b, &err), SD_OK, "duplicate name accepted");
    cr_assert_eq(sd_st_writer_set_metadata(w, "format", "pt", &err), SD_OK);
    cr_assert_eq(sd_st_writer_save(w, path, &err), SD_OK, "%s", err.msg);
    sd_st_writer_free(w);

    sd_st_file *f;
    cr_assert_eq(sd_st_open(&f, path, &err), SD_OK, "%s", err.msg);
    cr_assert_eq(f->n, 2u);
    cr_assert_eq(f->header_len % 8, 0u, "header not padded to 8 bytes");
    const sd_st_tensor *t = sd_st_find(f, "z.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->dtype, SD_DTYPE_F32);
    cr_assert_eq(t->ndim, 2);
    cr_assert_eq(t->shape[1], 3);
    cr_assert_eq(memcmp(t->data, a, sizeof a), 0);
    t = sd_st_find(f, "a.bias");
    cr_assert_eq(memcmp(t->data, b, sizeof b), 0);
    cr_assert_eq(t->begin, 0u, "tensors must be stored sorted by name");
    cr_assert_null(sd_st_find(f, "missing"));
    cr_assert(f->metadata_json && strstr(f->metadata_json, "\"format\""));
    sd_st_close(f);
    free(path);
    tu_rmrf(dir);
    free(dir);
}

Test(safetensors, accepts_minimal_and_scalar)
{
    unsigned char buf[256];
    size_t n = make_image(buf, "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                               "\"e\":{\"dtype\":\"I8\",\"shape\":[0,5],\"data_offsets\":[4,4]}}", 4);
    sd_st_file *f;
    sd_error err = {0};
    cr_assert_eq(sd_st_parse(&f, buf, n, "ok.safetensors", &err), SD_OK, "%s", err.msg);
    cr_assert_eq(sd_st_numel(sd_st_find(f, "s")), 1u);
    cr_assert_eq(sd_st_numel(sd_st_find(f, "e")), 0u);
    sd_st_close(f);
    n = make_image(buf, "{}", 0);
    cr_assert_eq(sd_st_parse(&f, buf, n, "empty.safetensors", &err), SD_OK, "%s", err.msg);
    sd_st_close(f);
}

Test(safetensors, rejects_bad_header_length)
{
    unsigned char buf[32] = {0};
    buf[0] = 0xff;
    buf[7] = 0x7f; /* absurd length */
    sd_st_file *f;
    sd_error err = {0};
    cr_assert_neq(sd_st_parse(&f, buf, sizeof buf, "len.safetensors", &err), SD_OK);
    cr_assert(strstr(err.msg, "header length"), "%s", err.msg);
    cr_assert_neq(sd_st_parse(&f, buf, 5, "short.safetensors", &err), SD_OK);
    cr_assert(strstr(err.msg, "too short"), "%s", err.msg);
}

Test(safetensors, rejects_invalid_json)
{
    expect_reject("{\"a\":{\"dtype\":\"F32\",", 0, "JSON");
    expect_reject("{\"a\":1,\"a\":2}", 0, "JSON"); /* duplicate key */
    expect_reject("[1,2,3]", 0, "start with");
}

Test(safetensors, rejects_unknown_dtype)
{
    expect_reject("{\"w\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "'w': unknown dtype");
}

Test(safetensors, rejects_shape_size_mismatch)
{
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'w': shape x dtype size");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w': shape[0]");
    expect_reject("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 4,
                  "'w': shape overflows");
}

Test(safetensors, rejects_offsets_outside_file)
{
    expect_reject("{\"w\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 4, "'w' ends at 8");
    expect_reject("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "'w': data_offsets end");
}

Test(safetensors, rejects_overlap_and_holes)
{
    expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
                  6, "'b' overlaps");
    expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                  "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}",
                  6, "hole in the data before tensor 'b'");
    expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 6, "trailing");
}

Test(safetensors, metadata_must_be_strings)
{
    expect_reject("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__.k");
    expect_reject("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":1}}", 1, "'w': unexpected key");
}

Test(safetensors, open_reports_missing_file)
{
    sd_st_file *f;
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&f, "/nonexistent/x.safetensors", &err), SD_ERR_IO);
    cr_assert(strstr(err.msg, "/nonexistent/x.safetensors"), "%s", err.msg);
}

/* Every truncation of a valid file must be refused cleanly. */
Test(safetensors, every_truncation_rejected)
{
    unsigned char buf[512];
    size_t n = make_image(buf, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
    for (size_t len = 0; len < n; len++) {
        sd_st_file *f;
        sd_error err = {0};
        cr_assert_neq(sd_st_parse(&f, buf, len, "cut.safetensors", &err), SD_OK, "accepted at %zu bytes", len);
    }
}
