/* hashmap.h - small open-addressing hash tables: string -> int32 (keys copied
 * into an arena owned by the map) and uint64 -> uint64. Used by the tokenizer
 * (vocabulary, BPE merge ranks, word cache), where lookups dominate. */
#ifndef SDXL_COMMON_HASHMAP_H
#define SDXL_COMMON_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t *slots; /* index+1 into entries, 0 = empty */
    size_t nslots;
    struct sd_strmap_entry {
        uint64_t hash;
        uint32_t key_off, key_len;
        int32_t value;
    } *entries;
    size_t n, cap;
    char *arena;
    size_t arena_len, arena_cap;
} sd_strmap;

void sd_strmap_init(sd_strmap *m);
void sd_strmap_free(sd_strmap *m);
void sd_strmap_clear(sd_strmap *m);
/* Inserts or overwrites. Returns 0, or -1 on allocation failure. */
int sd_strmap_put(sd_strmap *m, const char *key, size_t len, int32_t value);
/* Returns 1 and sets *value if found, else 0. */
int sd_strmap_get(const sd_strmap *m, const char *key, size_t len, int32_t *value);

typedef struct {
    uint64_t *keys; /* key+1 stored; 0 = empty */
    uint64_t *vals;
    size_t nslots, n;
} sd_u64map;

void sd_u64map_init(sd_u64map *m);
void sd_u64map_free(sd_u64map *m);
int sd_u64map_put(sd_u64map *m, uint64_t key, uint64_t value);
int sd_u64map_get(const sd_u64map *m, uint64_t key, uint64_t *value);

/* FNV-1a (64 bits) continued over data from h (SD_FNV1A_INIT to start):
 * for a hash built up piece by piece (a job's items). */
#define SD_FNV1A_INIT 1469598103934665603ull
uint64_t sd_fnv1a(uint64_t h, const void *data, size_t len);
/* FNV-1a of data with a final avalanche (hash table indices, ids). */
uint64_t sd_hash_bytes(const void *data, size_t len);

#endif
