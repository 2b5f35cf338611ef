/* safetensors.h - strict, mmap-based reader and a writer for the safetensors
 * format (8-byte little-endian header length, JSON header, raw data).
 *
 * The reader validates everything before handing out a pointer: header length
 * within the file and under a sane cap, valid JSON without duplicate keys,
 * known dtypes, shape x dtype size == data_offsets span, offsets inside the
 * data region, sorted, not overlapping and leaving no hole (as the reference
 * implementation requires). `__metadata__` (string to string) is allowed.
 * Any violation is an SD_ERR_FORMAT naming the file and the tensor. */
#ifndef SDXL_COMMON_SAFETENSORS_H
#define SDXL_COMMON_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"

#define SD_ST_MAX_DIMS 8
/* Larger headers than this are refused: the real SDXL UNet's is ~200 KB. */
#define SD_ST_MAX_HEADER (100u << 20)

typedef struct {
    char *name;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_ST_MAX_DIMS];
    uint64_t begin, end; /* offsets into the data region */
    const void *data;    /* points into the mapping */
} sd_st_tensor;

typedef struct {
    char *path;
    void *map;
    size_t map_size;
    size_t header_len;
    size_t n;
    sd_st_tensor *tensors; /* sorted by name */
    char *metadata_json;   /* the __metadata__ object re-serialised, or NULL */
} sd_st_file;

/* Opens and validates a safetensors file by mmap. On success *out must be
 * released with sd_st_close. */
sd_status sd_st_open(sd_st_file **out, const char *path, sd_error *err);
/* Validates an in-memory image (used by the fuzzer and the mmap path alike).
 * `path` names it in messages. The buffer must outlive the returned file. */
sd_status sd_st_parse(sd_st_file **out, const void *buf, size_t size, const char *path,
                      sd_error *err);
void sd_st_close(sd_st_file *f);

/* Finds a tensor by name (binary search); NULL if absent. */
const sd_st_tensor *sd_st_find(const sd_st_file *f, const char *name);
uint64_t sd_st_numel(const sd_st_tensor *t);
/* Copies an I64 tensor into an aligned array (safetensors data need not be
 * aligned to 8 bytes); returns a malloc'd array, or NULL if t is not I64 or
 * memory runs out. */
int64_t *sd_st_copy_i64(const sd_st_tensor *t);

/* ---- writer ----
 * Collects tensors (borrowing their data until sd_st_writer_save) and writes
 * them sorted by name, atomically (temp file, fsync, rename). */
typedef struct sd_st_writer sd_st_writer;

sd_st_writer *sd_st_writer_new(void);
/* data must hold numel(shape) * dtype size bytes and stay valid until save. */
sd_status sd_st_writer_add(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, sd_error *err);
/* Adds a tensor whose data the writer copies and owns. */
sd_status sd_st_writer_add_copy(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim,
                                const int64_t *shape, const void *data, sd_error *err);
sd_status sd_st_writer_set_metadata(sd_st_writer *w, const char *key, const char *value,
                                    sd_error *err);
sd_status sd_st_writer_save(sd_st_writer *w, const char *path, sd_error *err);
void sd_st_writer_free(sd_st_writer *w);

#endif

#ifndef SDXL_ST_FILL_DEFINED
#define SDXL_ST_FILL_DEFINED
/* Produces a tensor's bytes at save time (for writers of multi-GB models that
 * must not hold every tensor in memory). Returns SD_OK or an error. */
typedef sd_status (*sd_st_fill_fn)(void *dst, size_t nbytes, void *user, sd_error *err);
sd_status sd_st_writer_add_fill(sd_st_writer *w, const char *name, sd_dtype dtype, int ndim,
                                const int64_t *shape, sd_st_fill_fn fill, void *user, sd_error *err);
#endif
