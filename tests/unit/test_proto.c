/* test_proto.c - the wire format: round trip of header and tensor frames,
 * and a refusal with a reason for each malformation (wrong version, unknown
 * type, frame count or size not matching the header, hostile sizes). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/message.h"

static void decode_expect(const void *const *frames, const size_t *sizes, int n, sd_status want, const char *needle)
{
    sd_msg m;
    sd_error err = {0};
    sd_status st = sd_msg_decode(&m, frames, sizes, n, &err);
    cr_assert_eq(st, want, "status %d (%s)", st, err.msg);
    if (st == SD_OK)
        sd_msg_free(&m);
    else
        cr_assert(strstr(err.msg, needle), "'%s' lacks '%s'", err.msg, needle);
}

Test(proto, roundtrip_with_tensors)
{
    sd_msg m;
    sd_error err = {0};
    cr_assert_eq(sd_msg_new(&m, "RESULT", &err), SD_OK);
    json_object_set_new(m.hdr, "task_id", json_integer(42));
    json_object_set_new(m.hdr, "note", json_string("caf\xc3\xa9"));
    float lat[16];
    for (int i = 0; i < 16; i++)
        lat[i] = (float)i * 0.5f;
    int64_t shape[4] = {1, 4, 2, 2};
    cr_assert_eq(sd_msg_add_tensor(&m, "latents", SD_DTYPE_F32, 4, shape, lat, &err), SD_OK);
    void *hdr;
    size_t hlen;
    cr_assert_eq(sd_msg_encode_header(&m, &hdr, &hlen, &err), SD_OK);
    const void *frames[2] = {hdr, lat};
    size_t sizes[2] = {hlen, sizeof lat};
    sd_msg d;
    cr_assert_eq(sd_msg_decode(&d, frames, sizes, 2, &err), SD_OK, "%s", err.msg);
    cr_assert_str_eq(sd_msg_type(&d), "RESULT");
    long long id;
    cr_assert_eq(sd_msg_get_int(&d, "task_id", 0, 100, &id, &err), SD_OK);
    cr_assert_eq(id, 42);
    const sd_msg_tensor *t = sd_msg_tensor_get(&d, "latents");
    cr_assert_not_null(t);
    cr_assert_eq(t->ndim, 4);
    cr_assert_eq(memcmp(t->data, lat, sizeof lat), 0);
    cr_assert_eq(sd_msg_get_int(&d, "missing", 0, 1, &id, &err), SD_ERR_FORMAT);
    cr_assert(strstr(err.msg, "'missing'"), "%s", err.msg);
    free(hdr);
    sd_msg_free(&d);
    sd_msg_free(&m);
}

/* a header built by hand: fixmap {v: ver, type: type} */
static size_t make_hdr(unsigned char *b, int ver, const char *type)
{
    size_t n = 0, tl = strlen(type);
    b[n++] = 0x82;
    b[n++] = 0xa1;
    b[n++] = 'v';
    b[n++] = (unsigned char)ver;
    b[n++] = 0xa4;
    memcpy(b + n, "type", 4);
    n += 4;
    b[n++] = (unsigned char)(0xa0 | tl);
    memcpy(b + n, type, tl);
    return n + tl;
}

Test(proto, refusals_with_reasons)
{
    unsigned char b[64];
    size_t n = make_hdr(b, 2, "REGISTER");
    const void *f[2] = {b, b};
    size_t s[2] = {n, 4};
    decode_expect(f, s, 1, SD_ERR_UNSUPPORTED, "protocol version 2");
    n = make_hdr(b, 1, "BOGUS");
    s[0] = n;
    decode_expect(f, s, 1, SD_ERR_FORMAT, "unknown message type");
    n = make_hdr(b, 1, "HEARTBEAT");
    s[0] = n;
    decode_expect(f, s, 1, SD_OK, "");
    decode_expect(f, s, 2, SD_ERR_FORMAT, "data frames");
    s[0] = n - 3; /* truncated */
    decode_expect(f, s, 1, SD_ERR_FORMAT, "MessagePack");
    unsigned char huge[5] = {0xdf, 0x82, 0xfe, 0xc0, 0x02}; /* map of 2 billion entries */
    f[0] = huge;
    s[0] = 5;
    decode_expect(f, s, 1, SD_ERR_FORMAT, "MessagePack");
    unsigned char arr[3] = {0x92, 0x01, 0x02};
    f[0] = arr;
    s[0] = 3;
    decode_expect(f, s, 1, SD_ERR_FORMAT, "not a map");
    decode_expect(f, s, 0, SD_ERR_FORMAT, "empty");
}

Test(proto, tensor_frame_must_match_shape)
{
    sd_msg m;
    sd_error err = {0};
    sd_msg_new(&m, "RESULT", &err);
    float x[4] = {0};
    int64_t shape[1] = {4};
    sd_msg_add_tensor(&m, "x", SD_DTYPE_F32, 1, shape, x, &err);
    void *hdr;
    size_t hlen;
    cr_assert_eq(sd_msg_encode_header(&m, &hdr, &hlen, &err), SD_OK);
    const void *f[2] = {hdr, x};
    size_t s[2] = {hlen, 12};
    decode_expect(f, s, 2, SD_ERR_FORMAT, "tensor 'x': 12 bytes");
    free(hdr);
    sd_msg_free(&m);
}
