/* test_ops_reference.c - the op table (tests/ops/op_cases.h) in `make
 * test`: every op and variant at small shapes on the CPU backend against
 * its plain scalar reference. The same table at SDXL's shapes is the GPU
 * check (tests/gpu/check_ops.c).
 *
 * Bound: relative L2 < 1e-5. The backend computes in fp32 (unit roundoff
 * 6e-8); the largest reduction here has 108 terms (conv 4x3x3 ... 40-wide
 * linears), whose rounding error grows like sqrt(K) * 6e-8 < 1e-6 for random
 * data, so 1e-5 leaves a tenfold margin (measured here: at most 1.3e-7;
 * the data-movement ops are exact), while any indexing, padding, mask or
 * reduction bug gives errors of order 1. Outputs are poisoned with NaN
 * first, so an element left unwritten fails. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ops/op_cases.h"
#include "tests/test_util.h"

#define TOL 1e-5

static double rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void run_case(sd_backend *cpu, const op_case *c, int idx)
{
    sd_error err = {0};
    sd_tensor t[OP_MAXIN], *pt[OP_MAXIN] = {0};
    float *h[OP_MAXIN] = {0};
    memset(t, 0, sizeof t);
    op_cases_seed(0x9E3779B97F4A7C15ull * (unsigned long long)(idx + 1));
    for (int k = 0; k < c->nin; k++) {
        size_t n = (size_t)op_case_in_numel(c, k);
        h[k] = malloc(n * sizeof *h[k]);
        op_cases_fill(h[k], n, c->scale[k], SD_DTYPE_F32);
        cr_assert_eq(sd_tensor_from_host(cpu, &t[k], h[k], SD_DTYPE_F32, c->ndim[k], c->shape[k], 0, &err), SD_OK,
                     "%s: %s", c->name, err.msg);
        pt[k] = &t[k];
    }
    sd_tensor y = {0};
    cr_assert_eq(sd_tensor_alloc(cpu, &y, c->out_ndim, c->out_shape, &err), SD_OK, "%s: %s", c->name, err.msg);
    memset(y.data, 0xFF, y.bytes); /* NaN: an unwritten element fails */
    cr_assert_eq(c->fn(&y, pt, &c->p, &err), SD_OK, "%s: %s", c->name, err.msg);
    size_t n = (size_t)op_case_out_numel(c);
    float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    cr_assert_eq(sd_tensor_to_host_f32(&y, got, &err), SD_OK);
    c->ref(want, h, c);
    double rel = rel_l2(got, want, n);
    cr_expect(rel < TOL, "%s: relative L2 %.3e against the scalar reference (bound %.0e)", c->name, rel, TOL);
    free(got);
    free(want);
    sd_tensor_free(&y);
    for (int k = 0; k < c->nin; k++) {
        sd_tensor_free(&t[k]);
        free(h[k]);
    }
}

Test(ops_reference, every_op_on_the_cpu_backend_matches_its_scalar_reference)
{
    sd_backend *cpu = tu_cpu();
    for (int i = 0; i < op_cases_small_count; i++)
        run_case(cpu, &op_cases_small[i], i);
    sd_backend_free(cpu);
}

Test(ops_reference, the_small_table_covers_every_op_of_the_gpu_table)
{
    for (int i = 0; i < op_cases_sdxl_count; i++) {
        int found = 0;
        for (int j = 0; j < op_cases_small_count && !found; j++)
            found = op_cases_small[j].fn == op_cases_sdxl[i].fn && op_cases_small[j].ref;
        cr_expect(found, "GPU case '%s' has no small case with a reference", op_cases_sdxl[i].name);
    }
}

/* the reference is no copy of the backend: a deliberately wrong output
 * (one element moved) is caught at this bound */
Test(ops_reference, the_bound_catches_one_misplaced_element)
{
    const op_case *c = NULL;
    for (int i = 0; i < op_cases_small_count && !c; i++)
        if (!strcmp(op_cases_small[i].name, "nchw->nlc odd"))
            c = &op_cases_small[i];
    cr_assert_not_null(c);
    size_t n = (size_t)op_case_in_numel(c, 0);
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *z = malloc(n * sizeof *z);
    op_cases_seed(1);
    op_cases_fill(x, n, 1, SD_DTYPE_F32);
    c->ref(y, &x, c);
    memcpy(z, y, n * sizeof *z);
    z[3] = y[4];
    cr_assert(rel_l2(z, y, n) > TOL);
    free(x);
    free(y);
    free(z);
}
