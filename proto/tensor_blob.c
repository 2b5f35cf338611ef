/* tensor_blob.c - see tensor_blob.h. */
#include "proto/tensor_blob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REC_HDR (64 + 4 + 4 + 32 + 8)

sd_status sd_blob_pack(const sd_msg *m, void **blob, size_t *len, sd_error *err)
{
    size_t total = 8;
    for (int i = 0; i < m->ntensors; i++)
        total += REC_HDR + m->tensors[i].nbytes;
    unsigned char *b = malloc(total);
    if (!b)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    memcpy(b, "SDTB", 4);
    uint32_t n = (uint32_t)m->ntensors;
    memcpy(b + 4, &n, 4);
    size_t o = 8;
    for (int i = 0; i < m->ntensors; i++) {
        const sd_msg_tensor *t = &m->tensors[i];
        char name[64] = {0};
        snprintf(name, sizeof name, "%s", t->name);
        uint32_t dt = (uint32_t)t->dtype, nd = (uint32_t)t->ndim;
        int64_t sh[4] = {0};
        memcpy(sh, t->shape, (size_t)t->ndim * sizeof *sh);
        uint64_t nb = t->nbytes;
        memcpy(b + o, name, 64);
        memcpy(b + o + 64, &dt, 4);
        memcpy(b + o + 68, &nd, 4);
        memcpy(b + o + 72, sh, 32);
        memcpy(b + o + 104, &nb, 8);
        memcpy(b + o + REC_HDR, t->data, t->nbytes);
        o += REC_HDR + t->nbytes;
    }
    *blob = b;
    *len = total;
    return SD_OK;
}

sd_status sd_blob_pack_item(const sd_msg *m, int k, void **blob, size_t *len, sd_error *err)
{
    char suffix[16];
    snprintf(suffix, sizeof suffix, "_%d", k);
    size_t ls = strlen(suffix);
    sd_msg sub;
    memset(&sub, 0, sizeof sub);
    sd_status st = SD_OK;
    for (int i = 0; i < m->ntensors && st == SD_OK; i++) {
        const sd_msg_tensor *x = &m->tensors[i];
        size_t ln = strlen(x->name);
        if (ln > ls && !strcmp(x->name + ln - ls, suffix)) {
            char base[64];
            snprintf(base, sizeof base, "%.*s", (int)(ln - ls), x->name);
            st = sd_msg_add_tensor(&sub, base, x->dtype, x->ndim, x->shape, x->data, err);
        }
    }
    if (st == SD_OK && sub.ntensors == 0)
        st = sd_fail(err, SD_ERR_FORMAT, "no tensors for item %d", k);
    if (st == SD_OK)
        st = sd_blob_pack(&sub, blob, len, err);
    sd_msg_free(&sub);
    return st;
}

sd_status sd_blob_attach(sd_msg *m, const void *blob, size_t len, const char *suffix, sd_error *err)
{
    const unsigned char *b = blob;
    if (len < 8 || memcmp(b, "SDTB", 4))
        return sd_fail(err, SD_ERR_FORMAT, "stored intermediate is not a tensor blob");
    uint32_t n;
    memcpy(&n, b + 4, 4);
    size_t o = 8;
    for (uint32_t i = 0; i < n; i++) {
        if (len - o < REC_HDR)
            return sd_fail(err, SD_ERR_FORMAT, "tensor blob truncated");
        char name[65] = {0}, full[64];
        memcpy(name, b + o, 64);
        uint32_t dt, nd;
        int64_t sh[4];
        uint64_t nb;
        memcpy(&dt, b + o + 64, 4);
        memcpy(&nd, b + o + 68, 4);
        memcpy(sh, b + o + 72, 32);
        memcpy(&nb, b + o + 104, 8);
        if (dt >= SD_DTYPE_COUNT || nd > 4 || nb > len - o - REC_HDR)
            return sd_fail(err, SD_ERR_FORMAT, "tensor blob entry %u is corrupt", i);
        snprintf(full, sizeof full, "%s_%s", name, suffix);
        SD_TRY(sd_msg_add_tensor(m, full, (sd_dtype)dt, (int)nd, sh, b + o + REC_HDR, err));
        if (m->tensors[m->ntensors - 1].nbytes != nb)
            return sd_fail(err, SD_ERR_FORMAT, "tensor blob entry '%s' size mismatch", name);
        o += REC_HDR + nb;
    }
    return SD_OK;
}

void sd_data_key(char *out, size_t len, const char *job, long long idx)
{
    snprintf(out, len, "%s/%lld", job, idx);
}
