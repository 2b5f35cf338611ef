/* op_cases.h - the op table: every op of kernels/ops.h with its inputs,
 * parameters and output shape, run two ways:
 *   - on a GPU (tests/gpu/check_ops.c): op_cases_sdxl, SDXL's own shapes,
 *     the CUDA backend against the CPU backend;
 *   - in `make test` (tests/unit/test_ops_reference.c): op_cases_small,
 *     the same ops and variants at small shapes, the CPU backend against a
 *     plain scalar reference of each op in double precision (ref), written
 *     from the op's definition (diffusers / PyTorch semantics), not from
 *     the backend's code. */
#ifndef SDXL_TESTS_OPS_OP_CASES_H
#define SDXL_TESTS_OPS_OP_CASES_H

#include "kernels/ops.h"

#define OP_MAXIN 4

typedef struct {
    int i[4];
    float f;
} op_params;

typedef struct op_case op_case;
typedef sd_status (*op_fn)(sd_tensor *y, sd_tensor **in, const op_params *p, sd_error *err);
/* the scalar reference: y (out_shape) from the host inputs in[k] (shape[k]) */
typedef void (*op_ref)(float *y, float *const *in, const op_case *c);

struct op_case {
    const char *name;
    int nin;
    int ndim[OP_MAXIN];
    int64_t shape[OP_MAXIN][4];
    float scale[OP_MAXIN]; /* input spread; 0 for "norm weights near 1" */
    int out_ndim;
    int64_t out_shape[4];
    op_fn fn;
    op_params p;
    double flops; /* for the rate column; 0: report bandwidth */
    int quick;    /* part of --quick */
    op_ref ref;
};

extern const op_case op_cases_sdxl[];
extern const int op_cases_sdxl_count;
extern const op_case op_cases_small[];
extern const int op_cases_small_count;

/* Seeds the inputs' generator (a 64-bit LCG: the same values on any machine). */
void op_cases_seed(unsigned long long seed);
/* Fills n values rounded through dt (so every backend sees the same
 * numbers); scale 0 means "around 1" (norm gains). */
void op_cases_fill(float *h, size_t n, float scale, sd_dtype dt);
/* numel of input k / of the output */
int64_t op_case_in_numel(const op_case *c, int k);
int64_t op_case_out_numel(const op_case *c);

#endif
