/* scheduler_solvers.c - the steps of LMS, Heun, LCM and UniPC (see
 * scheduler.h); set_timesteps, add_noise and the Euler family's, DPM++'s and
 * DDIM's steps are in scheduler.c. The same rule: diffusers' float32 tensor
 * expressions operation by operation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "worker/engine/schedulers/scheduler.h"
#include "worker/engine/schedulers/brownian_tree.h"
#include "worker/engine/schedulers/scheduler_internal.h"

/* ---- LMS ---- */

/* QUADPACK's 21-point Gauss-Kronrod rule (dqk21), which scipy.integrate.quad
 * applies first and keeps when its error estimate is under epsrel 1e-4 of
 * the result: for LMS's low-degree Lagrange polynomials it always is. */
static const double XGK[11] = {0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
                               0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
                               0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
                               0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
                               0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
                               0.000000000000000000000000000000000};
static const double WGK[11] = {0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
                               0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
                               0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
                               0.123491976262065851077658325063855, 0.134709217311473325928054001771707,
                               0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
                               0.149445554002916905664936468389821};

/* diffusers' lms_derivative(tau): torch float32 0-d arithmetic on its
 * float32 sigmas, tau rounded to float32 */
static double lms_basis(const sd_scheduler *s, int order, int t, int cur, double tau)
{
    float prod = 1.0f, ft = (float)tau;
    for (int k = 0; k < order; k++) {
        if (k == cur)
            continue;
        prod = prod * ((ft - s->sigmas[t - k]) / (s->sigmas[t - cur] - s->sigmas[t - k]));
    }
    return (double)prod;
}

static double lms_coefficient(const sd_scheduler *s, int order, int t, int cur)
{
    double a = s->sigmas[t], b = s->sigmas[t + 1];
    double centr = 0.5 * (a + b), hlgth = 0.5 * (b - a);
    double resk = WGK[10] * lms_basis(s, order, t, cur, centr);
    for (int j = 1; j <= 5; j++) { /* the Gauss nodes (Fortran's even indices) */
        double absc = hlgth * XGK[2 * j - 1];
        resk += WGK[2 * j - 1] * (lms_basis(s, order, t, cur, centr - absc) + lms_basis(s, order, t, cur, centr + absc));
    }
    for (int j = 1; j <= 5; j++) { /* the Kronrod nodes */
        double absc = hlgth * XGK[2 * j - 2];
        resk += WGK[2 * j - 2] * (lms_basis(s, order, t, cur, centr - absc) + lms_basis(s, order, t, cur, centr + absc));
    }
    return resk * hlgth;
}

sd_status sd_sched_step_lms(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0, sd_error *err)
{
    const int max_order = 4;
    sd_status st = sd_sched_ensure_outputs(s, n, max_order, err);
    if (st != SD_OK)
        return st;
    float sigma = s->sigmas[s->step_index];
    /* the newest derivative goes last; the oldest drops past 4 */
    float *d = s->outputs[0];
    memmove(s->outputs, s->outputs + 1, (max_order - 1) * sizeof s->outputs[0]);
    s->outputs[max_order - 1] = d;
    for (size_t k = 0; k < n; k++) {
        float pred = sd_sched_euler_x0(s, x[k], mo[k], sigma);
        if (x0)
            x0[k] = pred;
        d[k] = (x[k] - pred) / sigma;
    }
    if (s->nderiv < max_order)
        s->nderiv++;
    int order = s->step_index + 1 < max_order ? s->step_index + 1 : max_order;
    float coeff[4];
    for (int c = 0; c < order; c++)
        coeff[c] = (float)lms_coefficient(s, order, s->step_index, c);
    /* sample + sum(coeff[c] * derivative[newest - c]), the sum from 0 in Python's order */
    for (size_t k = 0; k < n; k++) {
        float sum = 0.0f;
        for (int c = 0; c < order; c++) {
            float term = coeff[c] * s->outputs[max_order - 1 - c][k];
            sum = c == 0 ? term : sum + term;
        }
        x[k] = x[k] + sum;
    }
    return SD_OK;
}


/* ---- DPM++ SDE (DPMSolverSDEScheduler.step) ----
 * Two halves a step: the first from sigma to the log-sigma midpoint, the
 * second from sigma to sigma_next using the midpoint's model output, each an
 * ancestral step whose noise is the Brownian increment between its two
 * sigmas over sqrt of their distance. 0-d float32 tensor arithmetic as
 * torch does it; sigma_next 0 ends with an Euler step. */

static float t_of(float sigma) /* t_fn: sigma.log().neg() */
{
    return -logf(sigma);
}

static float sigma_of(float t) /* sigma_fn: t.neg().exp() */
{
    return expf(-t);
}

/* BrownianTreeNoiseSampler(sigma, sigma_next): the tree's increment between
 * them (sorted, the sign put back) over sqrt(|sigma_next - sigma|) */
static sd_status brownian_noise(sd_scheduler *s, float sigma, float sigma_next, float *noise, sd_error *err)
{
    int swap = sigma_next < sigma;
    float lo = swap ? sigma_next : sigma, hi = swap ? sigma : sigma_next;
    SD_TRY(sd_brownian_tree_increment(s->tree, (double)lo, (double)hi, noise, err));
    float sign = swap ? -1.0f : 1.0f, div = sqrtf(fabsf(sigma_next - sigma));
    for (size_t k = 0; k < s->out_len; k++)
        noise[k] = noise[k] * sign / div;
    return SD_OK;
}

sd_status sd_sched_step_dpm_sde(sd_scheduler *s, const float *mo, float *x, size_t n, sd_torch_gen *gen, float *x0,
                                sd_error *err)
{
    SD_TRY(sd_sched_ensure_outputs(s, n, 1, err));
    if (!s->tree) { /* over (the smallest sigma above 0, the largest), as diffusers builds it at the first step */
        float lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i <= s->n; i++) {
            if (s->sigmas[i] > 0.0f && s->sigmas[i] < lo)
                lo = s->sigmas[i];
            hi = s->sigmas[i] > hi ? s->sigmas[i] : hi;
        }
        SD_TRY(sd_brownian_tree_create(&s->tree, (double)lo, (double)hi, s->noise_seed, n, gen ? gen->batch_n : 0,
                                       gen ? gen->batch_i : 0, err));
    }
    int first = !s->sde_second, i = s->step_index;
    float sigma = first ? s->sigmas[i] : s->sigmas[i - 1], sigma_next = first ? s->sigmas[i + 1] : s->sigmas[i];
    float t = t_of(sigma), t_next = t_of(sigma_next);
    float t_proposed = t + (t_next - t) * 0.5f;
    float sigma_input = first ? sigma : sigma_of(t_proposed);
    /* the predicted x0: epsilon, or v (model_output * (-s / sqrt(s^2 + 1)) + sample / (s^2 + 1)) */
    float sq = sigma_input * sigma_input + 1.0f, v_a = -sigma_input / sqrtf(sq);
#define SDE_X0(k) (s->v_prediction ? mo[k] * v_a + x[k] / sq : x[k] - sigma_input * mo[k])
    if (sigma_next == 0.0f) {
        float dt = sigma_next - sigma;
        for (size_t k = 0; k < n; k++) {
            float pred = SDE_X0(k);
            if (x0)
                x0[k] = pred;
            float d = (x[k] - pred) / sigma;
            x[k] = x[k] + d * dt;
        }
        return SD_OK;
    }
    if (first)
        t_next = t_proposed;
    float *base = s->outputs[0]; /* the first half's input sample */
    float sigma_from = sigma_of(t), sigma_to = sigma_of(t_next);
    float from2 = sigma_from * sigma_from, to2 = sigma_to * sigma_to;
    float up = sqrtf(to2 * (from2 - to2) / from2);
    float sigma_up = up < sigma_to ? up : sigma_to; /* Python's min(sigma_to, up) */
    float sigma_down = sqrtf(to2 - sigma_up * sigma_up);
    float ancestral_t = t_of(sigma_down);
    float c_sample = sigma_of(ancestral_t) / sigma_of(t), c_pred = expm1f(t - ancestral_t);
    float *noise = malloc(n * sizeof *noise);
    if (!noise)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = brownian_noise(s, sigma_of(t), sigma_of(t_next), noise, err);
    for (size_t k = 0; st == SD_OK && k < n; k++) {
        float pred = SDE_X0(k);
        if (x0)
            x0[k] = pred;
        float from = first ? x[k] : base[k];
        if (first)
            base[k] = x[k];
        float prev = c_sample * from - c_pred * pred;
        x[k] = prev + noise[k] * 1.0f * sigma_up;
    }
#undef SDE_X0
    free(noise);
    if (st == SD_OK) {
        s->sde_second = first;
        s->mid_point_sigma = first ? sigma_of(t_next) : 0.0f;
    }
    return st;
}

/* ---- Heun ---- */

sd_status sd_sched_step_heun(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0, sd_error *err)
{
    sd_status st = sd_sched_ensure_outputs(s, n, 2, err);
    if (st != SD_OK)
        return st;
    int first = !s->heun_second, i = s->step_index;
    float sigma = first ? s->sigmas[i] : s->sigmas[i - 1], sigma_next = first ? s->sigmas[i + 1] : s->sigmas[i];
    float sigma_hat = sigma * (0.0f + 1.0f), sigma_input = first ? sigma_hat : sigma_next;
    float *prev_d = s->outputs[0], *prev_x = s->outputs[1];
    float r = s->clip_sample_range;
    if (first)
        s->heun_dt = sigma_next - sigma_hat;
    for (size_t k = 0; k < n; k++) {
        float pred = sd_sched_euler_x0(s, x[k], mo[k], sigma_input);
        if (s->clip_sample)
            pred = pred < -r ? -r : pred > r ? r : pred;
        if (x0)
            x0[k] = pred;
        if (first) {
            float d = (x[k] - pred) / sigma_hat;
            prev_d[k] = d;
            prev_x[k] = x[k];
            x[k] = x[k] + d * s->heun_dt;
        } else {
            float d = (x[k] - pred) / sigma_next;
            d = (prev_d[k] + d) / 2.0f;
            x[k] = prev_x[k] + d * s->heun_dt;
        }
    }
    s->heun_second = first;
    return SD_OK;
}


/* ---- LCM ---- */

sd_status sd_sched_step_lcm(sd_scheduler *s, const float *mo, float t, float *x, size_t n, sd_torch_gen *gen, float *x0,
                          sd_error *err)
{
    int i = s->step_index;
    float prev_t = i + 1 < s->n ? s->timesteps[i + 1] : t;
    float a_t = s->alphas_cumprod[(int)t];
    float a_prev = prev_t >= 0 ? s->alphas_cumprod[(int)prev_t] : s->final_alpha_cumprod;
    float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    /* the consistency model's boundary scalings, sigma_data 0.5 */
    float st = t * s->timestep_scaling, sd2 = 0.5f * 0.5f;
    float c_skip = sd2 / (st * st + sd2), c_out = st / sqrtf(st * st + sd2);
    float sq_a = sqrtf(a_t), sq_b = sqrtf(b_t), r = s->clip_sample_range;
    for (size_t k = 0; k < n; k++) {
        float pred = s->v_prediction ? sq_a * x[k] - sq_b * mo[k] : (x[k] - sq_b * mo[k]) / sq_a;
        if (s->clip_sample)
            pred = pred < -r ? -r : pred > r ? r : pred;
        if (x0)
            x0[k] = pred;
        x[k] = c_out * pred + c_skip * x[k];
    }
    if (i != s->n - 1) { /* fresh noise to the next timestep, but after the last step */
        float *noise = sd_sched_noise_from(gen, n, err);
        if (!noise)
            return err->code;
        float sq_ap = sqrtf(a_prev), sq_bp = sqrtf(b_prev);
        for (size_t k = 0; k < n; k++)
            x[k] = sq_ap * x[k] + sq_bp * noise[k];
        free(noise);
    }
    return SD_OK;
}


/* ---- UniPC ---- */

/* A x = b for n <= 3 in float32, as LAPACK's sgetrf2 + sgetrs do it:
 * partial pivoting, the column below a pivot scaled by its reciprocal */
static void lapack_solve(int n, float A[3][3], float *b)
{
    int piv[3];
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabsf(A[i][k]) > fabsf(A[p][k]))
                p = i;
        piv[k] = p;
        if (p != k)
            for (int j = 0; j < n; j++) {
                float t = A[k][j];
                A[k][j] = A[p][j];
                A[p][j] = t;
            }
        float r = 1.0f / A[k][k];
        for (int i = k + 1; i < n; i++)
            A[i][k] = A[i][k] * r;
        for (int i = k + 1; i < n; i++)
            for (int j = k + 1; j < n; j++)
                A[i][j] = A[i][j] + (-A[k][j]) * A[i][k];
    }
    for (int k = 0; k < n; k++)
        if (piv[k] != k) {
            float t = b[k];
            b[k] = b[piv[k]];
            b[piv[k]] = t;
        }
    for (int k = 0; k < n; k++)
        if (b[k] != 0.0f)
            for (int i = k + 1; i < n; i++)
                b[i] = b[i] - b[k] * A[i][k];
    for (int k = n - 1; k >= 0; k--)
        if (b[k] != 0.0f) {
            b[k] = b[k] / A[k][k];
            for (int i = 0; i < k; i++)
                b[i] = b[i] - b[k] * A[i][k];
        }
}

/* The coefficients of a UniP / UniC update of this order: rks, b (the
 * B(h)-scaled phi terms), h_phi_1 and B(h), as diffusers builds them */
static void unipc_terms(const sd_scheduler *s, int order, float h, const float *rk_prev, float *R_b, float *h_phi_1,
                        float *B_h, float R[3][3])
{
    float rks[3];
    for (int i = 0; i < order - 1; i++)
        rks[i] = rk_prev[i];
    rks[order - 1] = 1.0f;
    float hh = -h; /* predict_x0 */
    *h_phi_1 = expm1f(hh);
    float h_phi_k = *h_phi_1 / hh - 1.0f;
    *B_h = s->bh1 ? hh : expm1f(hh);
    int factorial = 1;
    for (int i = 1; i <= order; i++) {
        for (int j = 0; j < order; j++)
            R[i - 1][j] = i == 1 ? 1.0f : i == 2 ? rks[j] : rks[j] * rks[j];
        R_b[i - 1] = h_phi_k * (float)factorial / *B_h;
        factorial *= i + 1;
        h_phi_k = h_phi_k / hh - (float)(1.0 / factorial);
    }
}

/* UniP (predictor) or UniC (corrector) of the given order: at step index
 * `at`, the newest x0 prediction m0 and the older ones in outputs[] */
static void unipc_update(sd_scheduler *s, int corrector, int order, const float *x, const float *model_t,
                         const float *m0, float *out, size_t n)
{
    int at = s->step_index;
    int t_i = corrector ? at : at + 1, s0_i = corrector ? at - 1 : at;
    float a_t, s_t, a_s0, s_s0;
    sd_sched_alpha_sigma(s->sigmas[t_i], &a_t, &s_t);
    sd_sched_alpha_sigma(s->sigmas[s0_i], &a_s0, &s_s0);
    float lambda_t = logf(a_t) - logf(s_t), lambda_s0 = logf(a_s0) - logf(s_s0);
    float h = lambda_t - lambda_s0;
    /* the older predictions: outputs[2] is the newest held, [1] before it */
    const float *mi[2] = {NULL, NULL};
    float rk[2];
    for (int i = 1; i < order; i++) {
        int si = corrector ? at - (i + 1) : at - i;
        mi[i - 1] = s->outputs[2 - i];
        rk[i - 1] = (sd_sched_lambda_of(s->sigmas[si]) - lambda_s0) / h;
    }
    float R[3][3], b[3], h_phi_1, B_h;
    unipc_terms(s, order, h, rk, b, &h_phi_1, &B_h, R);
    float rhos[3];
    int nr = 0;
    if (!corrector && order >= 2) {
        if (order == 2) {
            rhos[0] = 1.0f * 0.5f;
        } else {
            float R2[3][3] = {{R[0][0], R[0][1], 0}, {R[1][0], R[1][1], 0}, {0, 0, 0}};
            rhos[0] = b[0], rhos[1] = b[1];
            lapack_solve(2, R2, rhos);
        }
        nr = order - 1;
    } else if (corrector) {
        if (order == 1) {
            rhos[0] = 1.0f * 0.5f;
        } else {
            for (int i = 0; i < order; i++)
                rhos[i] = b[i];
            lapack_solve(order, R, rhos);
        }
        nr = order - 1;
    }
    float c1 = s_t / s_s0, c2 = a_t * h_phi_1, c3 = a_t * B_h;
    for (size_t k = 0; k < n; k++) {
        float base = c1 * x[k] - c2 * m0[k];
        float res = 0.0f;
        for (int i = 0; i < nr; i++) {
            float d1 = (mi[i][k] - m0[k]) / rk[i];
            res = i == 0 ? rhos[0] * d1 : res + rhos[i] * d1;
        }
        if (corrector) {
            float d1_t = model_t[k] - m0[k];
            out[k] = base - c3 * ((nr ? res : 0.0f) + rhos[order - 1] * d1_t);
        } else {
            out[k] = nr ? base - c3 * res : base - c3 * 0.0f;
        }
    }
}

sd_status sd_sched_step_unipc(sd_scheduler *s, const float *mo, float *x, size_t n, float *x0_out, sd_error *err)
{
    /* outputs[0..2]: the x0 predictions, newest last; outputs[3]: last_sample */
    sd_status st = sd_sched_ensure_outputs(s, n, 4, err);
    if (st != SD_OK)
        return st;
    int i = s->step_index;
    float a, sg;
    sd_sched_alpha_sigma(s->sigmas[i], &a, &sg);
    float *conv = malloc(n * sizeof *conv);
    if (!conv)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++)
        conv[k] = s->v_prediction ? a * x[k] - sg * mo[k] : (x[k] - sg * mo[k]) / a;
    if (x0_out)
        memcpy(x0_out, conv, n * sizeof *conv);
    /* UniC: correct this sample with the new prediction (not on the first step) */
    if (i > 0 && s->have_last)
        unipc_update(s, 1, s->this_order, s->outputs[3], conv, s->outputs[2], x, n);
    float *oldest = s->outputs[0];
    s->outputs[0] = s->outputs[1];
    s->outputs[1] = s->outputs[2];
    s->outputs[2] = oldest;
    memcpy(s->outputs[2], conv, n * sizeof *conv);
    free(conv);
    int order = s->lower_order_final && s->n - i < s->solver_order ? s->n - i : s->solver_order;
    s->this_order = order < s->lower_order_nums + 1 ? order : s->lower_order_nums + 1;
    memcpy(s->outputs[3], x, n * sizeof *x);
    s->have_last = 1;
    unipc_update(s, 0, s->this_order, s->outputs[3], NULL, s->outputs[2], x, n);
    if (s->lower_order_nums < s->solver_order)
        s->lower_order_nums++;
    return SD_OK;
}

