/* hashmap.c - see hashmap.h. Linear probing, load factor <= 1/2. */
#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t sd_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

uint64_t sd_hash_bytes(const void *data, size_t len)
{
    /* FNV-1a, then a final avalanche so low bits are usable as the index */
    uint64_t h = sd_fnv1a(SD_FNV1A_INIT, data, len);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

void sd_strmap_init(sd_strmap *m)
{
    memset(m, 0, sizeof *m);
}

void sd_strmap_free(sd_strmap *m)
{
    free(m->slots);
    free(m->entries);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

void sd_strmap_clear(sd_strmap *m)
{
    if (m->slots)
        memset(m->slots, 0, m->nslots * sizeof *m->slots);
    m->n = 0;
    m->arena_len = 0;
}

static int strmap_grow(sd_strmap *m)
{
    size_t ns = m->nslots ? m->nslots * 2 : 1024;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->entries[i].hash & (ns - 1);
        while (slots[j])
            j = (j + 1) & (ns - 1);
        slots[j] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = ns;
    return 0;
}

int sd_strmap_get(const sd_strmap *m, const char *key, size_t len, int32_t *value)
{
    if (!m->nslots)
        return 0;
    uint64_t h = sd_hash_bytes(key, len);
    for (size_t j = h & (m->nslots - 1);; j = (j + 1) & (m->nslots - 1)) {
        uint32_t s = m->slots[j];
        if (!s)
            return 0;
        const struct sd_strmap_entry *e = &m->entries[s - 1];
        if (e->hash == h && e->key_len == len && memcmp(m->arena + e->key_off, key, len) == 0) {
            *value = e->value;
            return 1;
        }
    }
}

int sd_strmap_put(sd_strmap *m, const char *key, size_t len, int32_t value)
{
    if ((m->n + 1) * 2 > m->nslots && strmap_grow(m) != 0)
        return -1;
    uint64_t h = sd_hash_bytes(key, len);
    size_t j = h & (m->nslots - 1);
    for (;; j = (j + 1) & (m->nslots - 1)) {
        uint32_t s = m->slots[j];
        if (!s)
            break;
        struct sd_strmap_entry *e = &m->entries[s - 1];
        if (e->hash == h && e->key_len == len && memcmp(m->arena + e->key_off, key, len) == 0) {
            e->value = value;
            return 0;
        }
    }
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 512;
        void *ne = realloc(m->entries, nc * sizeof *m->entries);
        if (!ne)
            return -1;
        m->entries = ne;
        m->cap = nc;
    }
    if (m->arena_len + len + 1 > m->arena_cap) {
        size_t nc = m->arena_cap ? m->arena_cap * 2 : 8192;
        while (nc < m->arena_len + len + 1)
            nc *= 2;
        char *na = realloc(m->arena, nc);
        if (!na)
            return -1;
        m->arena = na;
        m->arena_cap = nc;
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->arena[m->arena_len + len] = '\0';
    m->entries[m->n] = (struct sd_strmap_entry){h, (uint32_t)m->arena_len, (uint32_t)len, value};
    m->arena_len += len + 1;
    m->slots[j] = (uint32_t)(m->n + 1);
    m->n++;
    return 0;
}

void sd_u64map_init(sd_u64map *m)
{
    memset(m, 0, sizeof *m);
}

void sd_u64map_free(sd_u64map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t u64_slot(uint64_t key, size_t nslots)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (nslots - 1);
}

static int u64map_grow(sd_u64map *m)
{
    size_t ns = m->nslots ? m->nslots * 2 : 1024;
    uint64_t *keys = calloc(ns, sizeof *keys), *vals = calloc(ns, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->nslots; i++) {
        if (!m->keys[i])
            continue;
        size_t j = u64_slot(m->keys[i] - 1, ns);
        while (keys[j])
            j = (j + 1) & (ns - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->nslots = ns;
    return 0;
}

int sd_u64map_put(sd_u64map *m, uint64_t key, uint64_t value)
{
    if ((m->n + 1) * 2 > m->nslots && u64map_grow(m) != 0)
        return -1;
    size_t j = u64_slot(key, m->nslots);
    while (m->keys[j] && m->keys[j] != key + 1)
        j = (j + 1) & (m->nslots - 1);
    if (!m->keys[j])
        m->n++;
    m->keys[j] = key + 1;
    m->vals[j] = value;
    return 0;
}

int sd_u64map_get(const sd_u64map *m, uint64_t key, uint64_t *value)
{
    if (!m->nslots)
        return 0;
    for (size_t j = u64_slot(key, m->nslots);; j = (j + 1) & (m->nslots - 1)) {
        if (!m->keys[j])
            return 0;
        if (m->keys[j] == key + 1) {
            *value = m->vals[j];
            return 1;
        }
    }
}
