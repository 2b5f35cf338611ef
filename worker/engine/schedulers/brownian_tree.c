/* brownian_tree.c - see brownian_tree.h. Follows torchsde 0.2.6's
 * _brownian/brownian_interval.py (BrownianInterval, _Interval: _loc_inner,
 * _split, _split_exact, _increment_and_space_time_levy_area without H) and
 * numpy's SeedSequence (numpy/random/bit_generator.pyx). Which intervals a
 * query tiles into depends only on the splits made so far, and with the
 * halfway tree a node's increment only on its ancestors' seeds, so the
 * search starts at the root (torchsde starts at the last interval and
 * climbs: the same tiling) and evicted increments are recomputed (torchsde's
 * LRU of 45 holds them: the same values). */
#include "worker/engine/schedulers/brownian_tree.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"
#include "common/torch_rng.h"

/* ---- numpy's SeedSequence ---- */

#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_L 0xca01f9ddu
#define SS_MIX_R 0x4973f715u

static uint32_t hashmix(uint32_t value, uint32_t *hash_const)
{
    value ^= *hash_const;
    *hash_const *= SS_MULT_A;
    value *= *hash_const;
    value ^= value >> 16;
    return value;
}

static uint32_t mix(uint32_t x, uint32_t y)
{
    uint32_t r = SS_MIX_L * x - SS_MIX_R * y;
    return r ^ (r >> 16);
}

/* _int_to_uint32_array: lowest word first, [0] for 0 */
static int int_words(uint64_t v, uint32_t *out)
{
    int n = 0;
    if (v == 0)
        out[n++] = 0;
    for (; v; v >>= 32)
        out[n++] = (uint32_t)v;
    return n;
}

#define SS_MAX_POOL 32

void sd_numpy_seed_sequence(uint64_t entropy, const uint64_t *key, int nkey, int pool_size, uint32_t *out,
                            int n_words)
{
    uint32_t words[SS_MAX_POOL + 2 + 2 * 8];
    int n = int_words(entropy, words);
    /* with a spawn key the run entropy is zero-filled to the pool size */
    if (nkey > 0)
        while (n < pool_size)
            words[n++] = 0;
    for (int k = 0; k < nkey && k < 8; k++)
        n += int_words(key[k], words + n);
    uint32_t pool[SS_MAX_POOL], hc = SS_INIT_A;
    if (pool_size > SS_MAX_POOL)
        pool_size = SS_MAX_POOL;
    for (int i = 0; i < pool_size; i++)
        pool[i] = hashmix(i < n ? words[i] : 0, &hc);
    for (int s = 0; s < pool_size; s++)
        for (int d = 0; d < pool_size; d++)
            if (s != d)
                pool[d] = mix(pool[d], hashmix(pool[s], &hc));
    for (int s = pool_size; s < n; s++)
        for (int d = 0; d < pool_size; d++)
            pool[d] = mix(pool[d], hashmix(words[s], &hc));
    uint32_t hb = SS_INIT_B;
    for (int i = 0; i < n_words; i++) {
        uint32_t v = pool[i % pool_size];
        v ^= hb;
        hb *= SS_MULT_B;
        v *= hb;
        v ^= v >> 16;
        out[i] = v;
    }
}

/* ---- the tree ---- */

#define POOL 24     /* diffusers' pool_size */
#define CACHE 45    /* torchsde's cache_size */

typedef struct {
    double start, end, midway;
    int parent, left, right, is_left, split;
    uint64_t key; /* spawn key and depth, set when split */
    int depth;
    uint32_t w_seed;
    int slot; /* cache slot holding its increment, or -1 */
} node;

struct sd_brownian_tree {
    node *v;
    int n, cap;
    uint64_t entropy;
    size_t len;
    int batch_n, batch_i;
    float *top;            /* the root's increment */
    float *slots;          /* CACHE x len */
    int slot_node[CACHE];
    unsigned long long slot_used[CACHE], clock;
};

/* Python's round(x, 6): the decimal rounding of x's exact value, read back */
static double round6(double x)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.6f", x);
    return strtod(buf, NULL);
}

static int add_node(sd_brownian_tree *t, double start, double end, int parent, int is_left)
{
    if (sd_grow((void **)&t->v, &t->cap, t->n, sizeof *t->v, 64))
        return -1;
    node *nd = &t->v[t->n];
    memset(nd, 0, sizeof *nd);
    nd->start = round6(start);
    nd->end = round6(end);
    nd->parent = parent;
    nd->is_left = is_left;
    nd->left = nd->right = -1;
    nd->slot = -1;
    return t->n++;
}

/* torch.randn(size, generator=torch.Generator().manual_seed(seed)) */
static void randn_seeded(sd_brownian_tree *t, uint32_t seed, float *out)
{
    sd_torch_gen g;
    sd_torch_gen_seed(&g, seed);
    g.batch_n = t->batch_n;
    g.batch_i = t->batch_i;
    sd_torch_randn_item(&g, out, t->len);
}

static int split_exact(sd_brownian_tree *t, int i, double mid)
{
    node *nd = &t->v[i];
    nd->midway = round6(mid);
    if (nd->parent >= 0) {
        nd->key = 2 * t->v[nd->parent].key + (nd->is_left ? 0 : 1);
        nd->depth = t->v[nd->parent].depth + 1;
    }
    /* the first word of generate_state: a word does not depend on how many
     * are asked for, so only the one used is made */
    uint64_t key[2] = {nd->key, (uint64_t)nd->depth};
    sd_numpy_seed_sequence(t->entropy, key, 2, POOL, &nd->w_seed, 1);
    double start = nd->start, end = nd->end;
    int l = add_node(t, start, mid, i, 1);
    int r = l < 0 ? -1 : add_node(t, mid, end, i, 0);
    if (r < 0)
        return -1;
    t->v[i].left = l;
    t->v[i].right = r;
    t->v[i].split = 1;
    return 0;
}

/* _split with the halfway tree: at the rounded half, then on down the side
 * holding `target` until a half is the target */
static int split(sd_brownian_tree *t, int i, double target)
{
    for (;;) {
        if (split_exact(t, i, 0.5 * (t->v[i].end + t->v[i].start)))
            return -1;
        if (target > t->v[i].midway)
            i = t->v[i].right;
        else if (target < t->v[i].midway)
            i = t->v[i].left;
        else
            return 0;
    }
}

typedef struct {
    int *items;
    int n, cap;
} int_list;

/* _loc_inner: the intervals tiling [ta, tb] from node i, in order; a node
 * not holding [ta, tb] passes it to its parent (after a split the search
 * goes on in the new right child, which need not hold ta) */
static int loc(sd_brownian_tree *t, int i, double ta, double tb, int_list *out)
{
    for (;;) {
        node *nd = &t->v[i];
        if ((ta < nd->start || tb > nd->end) && nd->parent >= 0) {
            i = nd->parent;
            continue;
        }
        if (ta == nd->start && tb == nd->end) {
            if (sd_grow((void **)&out->items, &out->cap, out->n, sizeof *out->items, 8))
                return -1;
            out->items[out->n++] = i;
            return 0;
        }
        if (!nd->split) {
            if (ta == nd->start) {
                if (split(t, i, tb))
                    return -1;
                i = t->v[i].left;
            } else {
                if (split(t, i, ta))
                    return -1;
                i = t->v[i].right;
            }
            continue;
        }
        if (tb <= nd->midway) {
            i = nd->left;
        } else if (ta >= nd->midway) {
            i = nd->right;
        } else {
            double mid = nd->midway;
            int right = nd->right;
            if (loc(t, nd->left, ta, mid, out))
                return -1;
            i = right;
            ta = mid;
        }
    }
}

static float *slot_of(sd_brownian_tree *t, int i)
{
    int s = t->v[i].slot;
    if (s < 0)
        return NULL;
    t->slot_used[s] = ++t->clock;
    return t->slots + (size_t)s * t->len;
}

/* a slot for node i's increment: a free one, else the least recently used */
static float *take_slot(sd_brownian_tree *t, int i)
{
    int best = 0;
    for (int s = 0; s < CACHE; s++) {
        if (t->slot_node[s] < 0) {
            best = s;
            break;
        }
        if (t->slot_used[s] < t->slot_used[best])
            best = s;
    }
    if (t->slot_node[best] >= 0)
        t->v[t->slot_node[best]].slot = -1;
    t->slot_node[best] = i;
    t->v[i].slot = best;
    t->slot_used[best] = ++t->clock;
    return t->slots + (size_t)best * t->len;
}

/* node i's increment into out: the Brownian bridge of its parent's, from
 * the nearest ancestor known, in torch's float32 order of operations. The
 * chain's noise draws (one full-size randn per node, most of the cost) are
 * independent of each other and made in parallel; the bridges then run in
 * order, so the values are the same however many threads draw. */
static sd_status increment(sd_brownian_tree *t, int i, float *out, sd_error *err)
{
    int chain[64], k = 0; /* i, its parent, ... up to a node known */
    const float *known = NULL;
    for (int at = i;; at = t->v[at].parent) {
        if (at == 0) {
            known = t->top;
            break;
        }
        if ((known = slot_of(t, at)))
            break;
        if (k == (int)(sizeof chain / sizeof chain[0]))
            return sd_fail(err, SD_ERR_INVALID, "Brownian tree: deeper than %d levels", k);
        chain[k++] = at;
    }
    memcpy(out, known, t->len * sizeof *out);
    if (k == 0)
        return SD_OK;
    float *noise = malloc((size_t)k * t->len * sizeof *noise);
    if (!noise)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory for a Brownian tree's noise");
#pragma omp parallel for schedule(dynamic, 1)
    for (int c = 0; c < k; c++)
        randn_seeded(t, t->v[t->v[chain[c]].parent].w_seed, noise + (size_t)c * t->len);
    for (int c = k - 1; c >= 0; c--) { /* from the known ancestor's child down to i */
        const node *nd = &t->v[chain[c]], *p = &t->v[nd->parent];
        double h_reciprocal = 1.0 / (p->end - p->start);
        double left_diff = p->midway - p->start, right_diff = p->end - p->midway;
        float a = (float)left_diff, b = (float)h_reciprocal;
        float sd = (float)sqrt(left_diff * right_diff * h_reciprocal);
        const float *z = noise + (size_t)c * t->len;
        for (size_t j = 0; j < t->len; j++) {
            float mean = a * out[j] * b;
            float left = mean + sd * z[j];
            out[j] = nd->is_left ? left : out[j] - left;
        }
        memcpy(take_slot(t, chain[c]), out, t->len * sizeof *out);
    }
    free(noise);
    return SD_OK;
}

sd_status sd_brownian_tree_create(sd_brownian_tree **out, double t0, double t1, uint64_t entropy, size_t n,
                                  int batch_n, int batch_i, sd_error *err)
{
    *out = NULL;
    if (!(t0 < t1) || !isfinite(t0) || !isfinite(t1))
        return sd_fail(err, SD_ERR_INVALID, "Brownian tree: the interval [%g, %g] is empty", t0, t1);
    sd_brownian_tree *t = calloc(1, sizeof *t);
    if (!t)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    t->entropy = entropy;
    t->len = n;
    t->batch_n = batch_n;
    t->batch_i = batch_i;
    for (int s = 0; s < CACHE; s++)
        t->slot_node[s] = -1;
    t->top = malloc(n * sizeof *t->top);
    t->slots = malloc((size_t)CACHE * n * sizeof *t->slots);
    if (!t->top || !t->slots || add_node(t, t0, t1, -1, 0) != 0) {
        sd_brownian_tree_free(t);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory for a Brownian tree of %zu values", n);
    }
    uint32_t seed;
    sd_numpy_seed_sequence(entropy, NULL, 0, POOL, &seed, 1);
    randn_seeded(t, seed, t->top);
    float scale = (float)sqrt(t1 - t0);
    for (size_t k = 0; k < n; k++)
        t->top[k] = t->top[k] * scale;
    *out = t;
    return SD_OK;
}

void sd_brownian_tree_free(sd_brownian_tree *t)
{
    if (!t)
        return;
    free(t->v);
    free(t->top);
    free(t->slots);
    free(t);
}

sd_status sd_brownian_tree_increment(sd_brownian_tree *t, double ta, double tb, float *w, sd_error *err)
{
    const node *root = &t->v[0];
    ta = ta < root->start ? root->start : ta > root->end ? root->end : ta;
    tb = tb < root->start ? root->start : tb > root->end ? root->end : tb;
    if (ta > tb)
        return sd_fail(err, SD_ERR_INVALID, "Brownian tree: query [%g, %g] runs backwards", ta, tb);
    if (ta == tb) {
        memset(w, 0, t->len * sizeof *w);
        return SD_OK;
    }
    ta = round6(ta);
    tb = round6(tb);
    if (ta == tb)
        return sd_fail(err, SD_ERR_INVALID, "Brownian tree: query [%g, %g] is below its resolution of 1e-6", ta, tb);
    int_list parts = {0};
    if (loc(t, 0, ta, tb, &parts)) {
        free(parts.items);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory in a Brownian tree of %d intervals", t->n);
    }
    float *wi = malloc(t->len * sizeof *wi);
    if (!wi) {
        free(parts.items);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    sd_status st = increment(t, parts.items[0], w, err);
    for (int k = 1; k < parts.n && st == SD_OK; k++) {
        st = increment(t, parts.items[k], wi, err);
        for (size_t j = 0; st == SD_OK && j < t->len; j++)
            w[j] = w[j] + wi[j];
    }
    free(wi);
    free(parts.items);
    return st;
}
