/* message.c - see message.h. */
#include "proto/message.h"

#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Every message kind, its wire name and the header fields each message of
 * that kind must carry ('s' string, 'i' integer, 'a' array, 'o' object):
 * checked here, in one place, for everything received (sd_msg_recv). */
static const struct {
    const char *name;
    const char *fields[5]; /* "key:t", NULL-terminated */
} kinds[SD_MSG_KIND_COUNT] = {
    [SD_MSG_KIND_REGISTER] = {"REGISTER", {"worker_id:s", "role:s", "model:s", "capacity:i", NULL}},
    [SD_MSG_KIND_HEARTBEAT] = {"HEARTBEAT", {NULL}},
    [SD_MSG_KIND_TASK] = {"TASK", {"task_id:i", "items:a", NULL}},
    [SD_MSG_KIND_RESULT] = {"RESULT", {"worker_id:s", "task_id:i", "items:a", NULL}},
    [SD_MSG_KIND_FAIL] = {"FAIL", {"worker_id:s", "task_id:i", "reason:s", NULL}},
    [SD_MSG_KIND_SUBMIT] = {"SUBMIT", {"spec:o", NULL}},
    [SD_MSG_KIND_SUBMIT_ITEMS] = {"SUBMIT_ITEMS", {"job_id:s", "first:i", "items:a", NULL}},
    [SD_MSG_KIND_SUBMIT_END] = {"SUBMIT_END", {"job_id:s", NULL}},
    [SD_MSG_KIND_STATUS] = {"STATUS", {NULL}},
    [SD_MSG_KIND_WATCH] = {"WATCH", {NULL}},
    [SD_MSG_KIND_CANCEL] = {"CANCEL", {"job_id:s", NULL}},
    [SD_MSG_KIND_RESULTS] = {"RESULTS", {"job_id:s", NULL}},
    [SD_MSG_KIND_WORKERS] = {"WORKERS", {NULL}},
    [SD_MSG_KIND_RETRY] = {"RETRY", {"job_id:s", NULL}},
    [SD_MSG_KIND_OK] = {"OK", {NULL}},
    [SD_MSG_KIND_ERROR] = {"ERROR", {"reason:s", NULL}},
    [SD_MSG_KIND_PEER] = {"PEER", {"peer:s", NULL}},
    [SD_MSG_KIND_FETCH] = {"FETCH", {"key:s", NULL}},
    [SD_MSG_KIND_RELEASE] = {"RELEASE", {"keys:a", NULL}},
};

static sd_msg_kind kind_of_name(const char *type)
{
    for (int i = 0; type && i < SD_MSG_KIND_COUNT; i++)
        if (!strcmp(type, kinds[i].name))
            return (sd_msg_kind)i;
    return SD_MSG_KIND_COUNT;
}

int sd_msg_type_known(const char *type)
{
    return kind_of_name(type) != SD_MSG_KIND_COUNT;
}

sd_msg_kind sd_msg_kind_of(const sd_msg *m)
{
    return kind_of_name(json_string_value(json_object_get(m->hdr, "type")));
}

const char *sd_msg_kind_name(sd_msg_kind k)
{
    return (unsigned)k < SD_MSG_KIND_COUNT ? kinds[k].name : "?";
}

sd_status sd_msg_check_fields(const sd_msg *m, sd_error *err)
{
    sd_msg_kind k = sd_msg_kind_of(m);
    if (k == SD_MSG_KIND_COUNT)
        return sd_fail(err, SD_ERR_FORMAT, "unknown message type '%s'", sd_msg_type(m));
    for (int i = 0; kinds[k].fields[i]; i++) {
        const char *f = kinds[k].fields[i], *colon = strchr(f, ':');
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(colon - f), f);
        json_t *v = json_object_get(m->hdr, key);
        char t = colon[1];
        int ok = t == 's' ? json_is_string(v) : t == 'i' ? json_is_integer(v) : t == 'a' ? json_is_array(v)
                                                                                    : json_is_object(v);
        if (!ok)
            return sd_fail(err, SD_ERR_FORMAT, "%s: field '%s' missing or not %s", kinds[k].name, key,
                           t == 's' ? "a string" : t == 'i' ? "an integer" : t == 'a' ? "a list" : "a map");
    }
    return SD_OK;
}

sd_status sd_msg_new(sd_msg *m, const char *type, sd_error *err)
{
    memset(m, 0, sizeof *m);
    if (!sd_msg_type_known(type))
        return sd_fail(err, SD_ERR_INVALID, "unknown message type '%s'", type);
    m->hdr = json_pack("{s:i, s:s}", "v", SD_PROTO_VERSION, "type", type);
    return m->hdr ? SD_OK : sd_fail(err, SD_ERR_NOMEM, "out of memory");
}

sd_status sd_msg_clone(sd_msg *dst, const sd_msg *src, sd_error *err)
{
    memset(dst, 0, sizeof *dst);
    dst->hdr = json_deep_copy(src->hdr);
    if (!dst->hdr)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < src->ntensors; i++) {
        const sd_msg_tensor *t = &src->tensors[i];
        void *copy = malloc(t->nbytes ? t->nbytes : 1);
        if (!copy) {
            sd_msg_free(dst);
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        }
        memcpy(copy, t->data, t->nbytes);
        dst->tensors[i] = *t;
        dst->tensors[i].data = copy;
        dst->tensors[i].owned = copy;
        dst->ntensors = i + 1;
    }
    return SD_OK;
}

void sd_msg_free(sd_msg *m)
{
    json_decref(m->hdr);
    for (int i = 0; i < m->ntensors; i++)
        free(m->tensors[i].owned);
    memset(m, 0, sizeof *m);
}

const char *sd_msg_type(const sd_msg *m)
{
    const char *t = json_string_value(json_object_get(m->hdr, "type"));
    return t ? t : "?";
}

static size_t tensor_bytes(sd_dtype dt, int ndim, const int64_t *shape, int *overflow)
{
    uint64_t n = sd_dtype_size(dt);
    *overflow = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && n > SD_MSG_MAX_TENSOR_BYTES / (uint64_t)shape[d])) {
            *overflow = 1;
            return 0;
        }
        n *= (uint64_t)shape[d];
    }
    if (n > SD_MSG_MAX_TENSOR_BYTES)
        *overflow = 1;
    return (size_t)n;
}

sd_status sd_msg_add_tensor(sd_msg *m, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                            const void *data, sd_error *err)
{
    if (m->ntensors == SD_MSG_MAX_TENSORS)
        return sd_fail(err, SD_ERR_INVALID, "message: more than %d tensors", SD_MSG_MAX_TENSORS);
    if (ndim < 0 || ndim > 4 || strlen(name) >= sizeof m->tensors[0].name || !name[0])
        return sd_fail(err, SD_ERR_INVALID, "message: bad tensor '%s'", name);
    sd_msg_tensor *t = &m->tensors[m->ntensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    int of;
    t->nbytes = tensor_bytes(dtype, ndim, shape, &of);
    if (of)
        return sd_fail(err, SD_ERR_INVALID, "message: tensor '%s' is too large", name);
    t->data = data;
    m->ntensors++;
    return SD_OK;
}

const sd_msg_tensor *sd_msg_tensor_get(const sd_msg *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

/* ---- json <-> msgpack ---- */

static int pack_json(msgpack_packer *pk, json_t *v, int depth)
{
    if (depth > 16)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach(v, k, x) {
            msgpack_pack_str_with_body(pk, k, strlen(k));
            if (pack_json(pk, x, depth + 1))
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, x) {
            if (pack_json(pk, x, depth + 1))
                return -1;
        }
        return 0;
    }
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(v));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(v));
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    default:
        return msgpack_pack_nil(pk);
    }
}

/* Converts a MessagePack object; NULL with a reason on anything we refuse. */
static json_t *to_json(const msgpack_object *o, int depth, const char **why)
{
    if (depth > 16) {
        *why = "nested too deeply";
        return NULL;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            *why = "integer out of range";
            return NULL;
        }
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64)) {
            *why = "non-finite number";
            return NULL;
        }
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: {
        json_t *s = json_stringn(o->via.str.ptr, o->via.str.size);
        if (!s)
            *why = "string is not valid UTF-8";
        return s;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            json_t *x = to_json(&o->via.array.ptr[i], depth + 1, why);
            if (!x || json_array_append_new(a, x)) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *obj = json_object();
        for (uint32_t i = 0; obj && i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR || k->via.str.size == 0 || k->via.str.size > 128 ||
                memchr(k->via.str.ptr, 0, k->via.str.size)) {
                *why = "map key is not a short string";
                json_decref(obj);
                return NULL;
            }
            char key[129];
            memcpy(key, k->via.str.ptr, k->via.str.size);
            key[k->via.str.size] = '\0';
            if (json_object_get(obj, key)) {
                *why = "duplicate map key";
                json_decref(obj);
                return NULL;
            }
            json_t *x = to_json(&o->via.map.ptr[i].val, depth + 1, why);
            if (!x || json_object_set_new(obj, key, x)) {
                if (!x)
                    ;
                else
                    *why = "bad map key";
                json_decref(obj);
                return NULL;
            }
        }
        return obj;
    }
    default:
        *why = "binary and extension values are not allowed in headers";
        return NULL;
    }
}

sd_status sd_msg_encode_header(const sd_msg *m, void **buf, size_t *len, sd_error *err)
{
    json_t *hdr = json_deep_copy(m->hdr);
    json_t *ts = json_array();
    for (int i = 0; i < m->ntensors; i++) {
        const sd_msg_tensor *t = &m->tensors[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_array_append_new(ts, json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype", sd_dtype_name(t->dtype),
                                            "shape", shape));
    }
    json_object_set_new(hdr, "tensors", ts);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = pack_json(&pk, hdr, 0);
    json_decref(hdr);
    if (rc) {
        msgpack_sbuffer_destroy(&sb);
        return sd_fail(err, SD_ERR_INVALID, "message %s: header cannot be encoded", sd_msg_type(m));
    }
    *buf = sb.data;
    *len = sb.size;
    return SD_OK;
}

static sd_status parse_tensor_desc(sd_msg *m, json_t *d, int i, size_t frame_size, sd_error *err)
{
    json_t *name = json_object_get(d, "name"), *dt = json_object_get(d, "dtype"), *shape = json_object_get(d, "shape");
    if (!json_is_object(d) || !json_is_string(name) || !json_is_string(dt) || !json_is_array(shape))
        return sd_fail(err, SD_ERR_FORMAT, "tensor %d: needs name, dtype and shape", i);
    sd_dtype dtype;
    if (sd_dtype_parse(json_string_value(dt), &dtype))
        return sd_fail(err, SD_ERR_FORMAT, "tensor %d: unknown dtype '%s'", i, json_string_value(dt));
    size_t nd = json_array_size(shape);
    if (nd > 4)
        return sd_fail(err, SD_ERR_FORMAT, "tensor %d: %zu dimensions (at most 4)", i, nd);
    int64_t sh[4];
    for (size_t k = 0; k < nd; k++) {
        json_t *x = json_array_get(shape, k);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return sd_fail(err, SD_ERR_FORMAT, "tensor %d: shape[%zu] is not a non-negative integer", i, k);
        sh[k] = json_integer_value(x);
    }
    SD_TRY(sd_msg_add_tensor(m, json_string_value(name), dtype, (int)nd, sh, NULL, err));
    sd_msg_tensor *t = &m->tensors[m->ntensors - 1];
    if (t->nbytes != frame_size)
        return sd_fail(err, SD_ERR_FORMAT, "tensor '%s': %zu bytes in its frame, shape and dtype need %zu", t->name,
                       frame_size, t->nbytes);
    return SD_OK;
}

/* Walks MessagePack bytes without allocating and checks that every declared
 * container and string fits in what is left: msgpack-c's unpacker allocates
 * for a map's declared size before reading it, so 5 hostile bytes could ask
 * for 100 GiB (found by the fuzzer). Each object takes at least one byte, so
 * a count of pending objects above the bytes left is a lie. */
static int msgpack_plausible(const unsigned char *p, size_t len)
{
    size_t i = 0;
    uint64_t pending = 1;
    while (pending) {
        if (i >= len)
            return 0;
        unsigned b = p[i++];
        uint64_t add = 0, skip = 0;
        int lenbytes = 0, ext = 0;
        pending--;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        } else if (b >= 0x80 && b <= 0x8f) {
            add = 2ull * (b & 0x0f);
        } else if (b >= 0x90 && b <= 0x9f) {
            add = b & 0x0f;
        } else if (b >= 0xa0 && b <= 0xbf) {
            skip = b & 0x1f;
        } else {
            switch (b) {
            case 0xc4: case 0xd9: lenbytes = 1; break;
            case 0xc5: case 0xda: lenbytes = 2; break;
            case 0xc6: case 0xdb: lenbytes = 4; break;
            case 0xc7: lenbytes = 1; ext = 1; break;
            case 0xc8: lenbytes = 2; ext = 1; break;
            case 0xc9: lenbytes = 4; ext = 1; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: case 0xdd: case 0xde: case 0xdf: {
                int nb = (b == 0xdc || b == 0xde) ? 2 : 4;
                if (i + (size_t)nb > len)
                    return 0;
                uint64_t n = 0;
                for (int k = 0; k < nb; k++)
                    n = (n << 8) | p[i + k];
                i += (size_t)nb;
                add = (b >= 0xde) ? 2 * n : n;
                break;
            }
            default:
                return 0; /* 0xc1 is never used */
            }
        }
        if (lenbytes) {
            if (i + (size_t)lenbytes > len)
                return 0;
            for (int k = 0; k < lenbytes; k++)
                skip = (skip << 8) | p[i + k];
            i += (size_t)lenbytes;
            skip += (uint64_t)ext;
        }
        if (skip > len - i)
            return 0;
        i += (size_t)skip;
        pending += add;
        if (pending > len - i)
            return 0;
    }
    return i == len;
}

sd_status sd_msg_decode(sd_msg *m, const void *const *frames, const size_t *sizes, int nframes, sd_error *err)
{
    memset(m, 0, sizeof *m);
    if (nframes < 1)
        return sd_fail(err, SD_ERR_FORMAT, "empty message");
    if (sizes[0] == 0 || sizes[0] > SD_MSG_MAX_HEADER)
        return sd_fail(err, SD_ERR_FORMAT, "header of %zu bytes (1 to %u)", sizes[0], SD_MSG_MAX_HEADER);
    if (!msgpack_plausible(frames[0], sizes[0]))
        return sd_fail(err, SD_ERR_FORMAT, "header is not one well-formed MessagePack value");
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&up, frames[0], sizes[0], &off);
    if (r != MSGPACK_UNPACK_SUCCESS || off != sizes[0]) {
        msgpack_unpacked_destroy(&up);
        return sd_fail(err, SD_ERR_FORMAT, "header is not one MessagePack value");
    }
    if (up.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&up);
        return sd_fail(err, SD_ERR_FORMAT, "header is not a map");
    }
    const char *why = "malformed";
    json_t *hdr = to_json(&up.data, 0, &why);
    msgpack_unpacked_destroy(&up);
    if (!hdr)
        return sd_fail(err, SD_ERR_FORMAT, "header: %s", why);
    m->hdr = hdr;
    json_t *v = json_object_get(hdr, "v"), *type = json_object_get(hdr, "type");
    sd_status st = SD_OK;
    if (!json_is_integer(v))
        st = sd_fail(err, SD_ERR_FORMAT, "header has no protocol version 'v'");
    else if (json_integer_value(v) != SD_PROTO_VERSION)
        st = sd_fail(err, SD_ERR_UNSUPPORTED, "protocol version %lld is not supported (this peer speaks %d)",
                     (long long)json_integer_value(v), SD_PROTO_VERSION);
    else if (!json_is_string(type) || !sd_msg_type_known(json_string_value(type)))
        st = sd_fail(err, SD_ERR_FORMAT, "unknown message type");
    json_t *ts = json_object_get(hdr, "tensors");
    int nt = 0;
    if (st == SD_OK && ts && !json_is_array(ts))
        st = sd_fail(err, SD_ERR_FORMAT, "'tensors' is not a list");
    if (st == SD_OK && ts) {
        nt = (int)json_array_size(ts);
        if (nt > SD_MSG_MAX_TENSORS)
            st = sd_fail(err, SD_ERR_FORMAT, "%d tensors (at most %d)", nt, SD_MSG_MAX_TENSORS);
    }
    if (st == SD_OK && nframes != 1 + nt)
        st = sd_fail(err, SD_ERR_FORMAT, "%d data frames for %d described tensors", nframes - 1, nt);
    for (int i = 0; i < nt && st == SD_OK; i++)
        st = parse_tensor_desc(m, json_array_get(ts, (size_t)i), i, sizes[1 + i], err);
    for (int i = 0; i < m->ntensors && st == SD_OK; i++) {
        sd_msg_tensor *t = &m->tensors[i];
        t->owned = malloc(t->nbytes ? t->nbytes : 1);
        if (!t->owned) {
            st = sd_fail(err, SD_ERR_NOMEM, "out of memory for tensor '%s'", t->name);
            break;
        }
        memcpy(t->owned, frames[1 + i], t->nbytes);
        t->data = t->owned;
    }
    if (st == SD_OK)
        json_object_del(hdr, "tensors");
    else
        sd_msg_free(m);
    return st;
}

sd_status sd_msg_send(void *sock, const void *route, size_t route_len, const sd_msg *m, sd_error *err)
{
    void *hbuf;
    size_t hlen;
    SD_TRY(sd_msg_encode_header(m, &hbuf, &hlen, err));
    int flags = ZMQ_DONTWAIT;
    int rc = 0;
    if (route)
        rc = zmq_send(sock, route, route_len, flags | ZMQ_SNDMORE) < 0;
    if (!rc)
        rc = zmq_send(sock, hbuf, hlen, flags | (m->ntensors ? ZMQ_SNDMORE : 0)) < 0;
    for (int i = 0; !rc && i < m->ntensors; i++)
        rc = zmq_send(sock, m->tensors[i].data, m->tensors[i].nbytes,
                      flags | (i + 1 < m->ntensors ? ZMQ_SNDMORE : 0)) < 0;
    free(hbuf);
    if (rc)
        return sd_fail(err, SD_ERR_IO, "send %s: %s", sd_msg_type(m), zmq_strerror(zmq_errno()));
    return SD_OK;
}

sd_status sd_msg_recv(void *sock, int is_router, sd_msg *m, unsigned char *route, size_t *route_len,
                      sd_error *err)
{
    memset(m, 0, sizeof *m);
    zmq_msg_t parts[2 + SD_MSG_MAX_TENSORS + 8];
    int n = 0, more = 1, too_many = 0;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_init(&tmp);
        if (zmq_msg_recv(&tmp, sock, 0) < 0) {
            zmq_msg_close(&tmp);
            for (int i = 0; i < n; i++)
                zmq_msg_close(&parts[i]);
            return sd_fail(err, SD_ERR_IO, "recv: %s", zmq_strerror(zmq_errno()));
        }
        more = zmq_msg_more(&tmp);
        if (n < (int)(sizeof parts / sizeof parts[0]))
            parts[n++] = tmp;
        else {
            too_many = 1;
            zmq_msg_close(&tmp);
        }
    }
    int first = 0;
    sd_status st = SD_OK;
    if (is_router) {
        size_t l = zmq_msg_size(&parts[0]);
        if (l > 255)
            l = 255;
        memcpy(route, zmq_msg_data(&parts[0]), l);
        *route_len = l;
        first = 1;
    }
    if (too_many)
        st = sd_fail(err, SD_ERR_FORMAT, "too many frames");
    else if (n - first < 1)
        st = sd_fail(err, SD_ERR_FORMAT, "empty message");
    if (st == SD_OK) {
        const void *frames[2 + SD_MSG_MAX_TENSORS + 8];
        size_t sizes[2 + SD_MSG_MAX_TENSORS + 8];
        for (int i = first; i < n; i++) {
            frames[i - first] = zmq_msg_data(&parts[i]);
            sizes[i - first] = zmq_msg_size(&parts[i]);
        }
        st = sd_msg_decode(m, frames, sizes, n - first, err);
        if (st == SD_OK && (st = sd_msg_check_fields(m, err)) != SD_OK)
            sd_msg_free(m);
        const char *uid = st == SD_OK ? zmq_msg_gets(&parts[first], "User-Id") : NULL;
        if (uid)
            snprintf(m->user_id, sizeof m->user_id, "%s", uid);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
    return st;
}

sd_status sd_msg_get_str(const sd_msg *m, const char *key, const char **out, sd_error *err)
{
    json_t *v = json_object_get(m->hdr, key);
    if (!json_is_string(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: field '%s' missing or not a string", sd_msg_type(m), key);
    *out = json_string_value(v);
    return SD_OK;
}

sd_status sd_msg_get_int(const sd_msg *m, const char *key, long long lo, long long hi, long long *out, sd_error *err)
{
    json_t *v = json_object_get(m->hdr, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return sd_fail(err, SD_ERR_FORMAT, "%s: field '%s' missing or not an integer in [%lld, %lld]", sd_msg_type(m),
                       key, lo, hi);
    *out = json_integer_value(v);
    return SD_OK;
}
