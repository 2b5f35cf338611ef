/* clip_tokenizer.c - see clip_tokenizer.h. The steps follow transformers'
 * CLIPTokenizer._tokenize (BasicTokenizer branch) and bpe(), in that order. */
#include "worker/engine/text/clip_tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/fsutil.h"
#include "common/hashmap.h"

/* CLIP uses merges[1 : 49152 - 256 - 2 + 1] of merges.txt (line 0 is the
 * "#version" header). */
#define CLIP_NUM_MERGES (49152 - 256 - 2)
#define CLIP_MAX_SPECIAL 4
#define WORD_CACHE_LIMIT 200000

typedef struct {
    char *text;
    size_t len;
    int32_t id;
} special_token;

struct sd_clip_tokenizer {
    sd_strmap vocab;
    sd_u64map merges; /* (a << 32 | b) -> (rank << 32 | merged id) */
    int32_t byte_id[256], byte_end_id[256];
    sd_strmap cache; /* word -> offset into cache_ids: [count, ids...] */
    int32_t *cache_ids;
    size_t cache_len, cache_cap;
    special_token special[CLIP_MAX_SPECIAL];
    int nspecial;
    int32_t bos, eos, pad, unk;
    int max_length;
    /* scratch buffers reused across calls */
    uint32_t *cps, *cps2;
    size_t cps_cap;
    int32_t *sym;
    size_t sym_cap;
    /* id -> index into vocab.entries (-1: no entry), built on first use */
    int32_t *by_id;
    int32_t n_ids;
};

/* ---- byte <-> unicode table of GPT-2 / CLIP ---- */
static void bytes_to_unicode(uint32_t table[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        table[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

static size_t utf8_put(char *dst, uint32_t cp)
{
    return (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)dst);
}

/* ---- loading ---- */

/* The vocabulary from a JSON object {token: id} (path names it in errors). */
static sd_status vocab_from_json(sd_clip_tokenizer *t, json_t *root, const char *path, sd_error *err)
{
    if (!json_is_object(root))
        return sd_fail(err, SD_ERR_FORMAT, "%s: the vocabulary is not a JSON object", path);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) > INT32_MAX)
            return sd_fail(err, SD_ERR_FORMAT, "%s: id of token '%s' is not a non-negative integer", path, key);
        if (sd_strmap_put(&t->vocab, key, strlen(key), (int32_t)json_integer_value(val)) != 0)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    uint32_t table[256];
    bytes_to_unicode(table);
    for (int b = 0; b < 256; b++) {
        char buf[16];
        size_t n = utf8_put(buf, table[b]);
        memcpy(buf + n, "</w>", 4);
        if (!sd_strmap_get(&t->vocab, buf, n, &t->byte_id[b]) ||
            !sd_strmap_get(&t->vocab, buf, n + 4, &t->byte_end_id[b]))
            return sd_fail(err, SD_ERR_FORMAT, "%s: byte token for 0x%02x missing from the vocabulary", path, b);
    }
    return SD_OK;
}

/* Merge number `rank`: tokens a and b join into their concatenation. */
static sd_status add_merge(sd_clip_tokenizer *t, const char *a_text, size_t la, const char *b_text, size_t lb,
                           int rank, sd_error *err)
{
    char joined[1024];
    int32_t a, b, m;
    if (la + lb > sizeof joined)
        return sd_fail(err, SD_ERR_FORMAT, "merge %d is longer than %zu bytes", rank, sizeof joined);
    if (!sd_strmap_get(&t->vocab, a_text, la, &a) || !sd_strmap_get(&t->vocab, b_text, lb, &b))
        return SD_OK; /* cannot apply to any word: transformers ignores it too */
    memcpy(joined, a_text, la);
    memcpy(joined + la, b_text, lb);
    if (!sd_strmap_get(&t->vocab, joined, la + lb, &m))
        m = t->unk; /* transformers would emit the unknown token */
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b, old;
    if (!sd_u64map_get(&t->merges, key, &old) &&
        sd_u64map_put(&t->merges, key, ((uint64_t)rank << 32) | (uint32_t)m) != 0)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    return SD_OK;
}

/* merges.txt: a "#version" header, then one "a b" merge per line */
static sd_status merges_from_text(sd_clip_tokenizer *t, const char *path, sd_error *err)
{
    char *text = NULL;
    SD_TRY(sd_read_file(path, &text, NULL, err));
    sd_status st = SD_OK;
    char *line = text, *next;
    int lineno = 0, rank = 0;
    for (; line && *line && rank < CLIP_NUM_MERGES && st == SD_OK; line = next, lineno++) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        if (lineno == 0 && strncmp(line, "#version", 8) == 0)
            continue;
        char *sp = strchr(line, ' ');
        if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' ')) {
            st = sd_fail(err, SD_ERR_FORMAT, "%s:%d: a merge must be two tokens separated by one space", path,
                         lineno + 1);
            break;
        }
        size_t la = (size_t)(sp - line);
        st = add_merge(t, line, la, sp + 1, len - la - 1, rank++, err);
        if (st != SD_OK)
            sd_error_prefix(err, st, "%s:%d: ", path, lineno + 1);
    }
    free(text);
    return st;
}

/* tokenizer.json's model.merges: ["a b", ...] or [["a", "b"], ...] */
static sd_status merges_from_json(sd_clip_tokenizer *t, json_t *merges, const char *path, sd_error *err)
{
    if (!json_is_array(merges))
        return sd_fail(err, SD_ERR_FORMAT, "%s: model.merges is not a list", path);
    for (size_t i = 0; i < json_array_size(merges) && (int)i < CLIP_NUM_MERGES; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (sp && sp != a && sp[1] && !strchr(sp + 1, ' ')) {
                la = (size_t)(sp - a);
                b = sp + 1;
                lb = strlen(b);
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            la = strlen(a);
            lb = strlen(b);
        }
        if (!b || !la || !lb)
            return sd_fail(err, SD_ERR_FORMAT, "%s: model.merges[%zu] is not two tokens", path, i);
        SD_TRY(add_merge(t, a, la, b, lb, (int)i, err));
    }
    return SD_OK;
}

static json_t *load_json(const char *path, sd_error *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        sd_fail(err, SD_ERR_FORMAT, "%s: %s", path, jerr.text);
    return root;
}

/* Where the vocabulary and merges come from: vocab.json and merges.txt, as
 * the hub's SDXL folders carry them, or else tokenizer.json (what
 * transformers 5 saves alone), read once, with both inside its "model". */
typedef struct {
    char *vocab, *merges, *tj; /* the three paths */
    json_t *doc;               /* tokenizer.json, parsed; NULL for the two files */
    json_t *model;             /* its "model" object */
} vocab_source;

static void vocab_source_close(vocab_source *v)
{
    json_decref(v->doc);
    free(v->vocab);
    free(v->merges);
    free(v->tj);
}

static sd_status vocab_source_open(vocab_source *v, const char *dir, sd_error *err)
{
    memset(v, 0, sizeof *v);
    v->vocab = sd_path_join(dir, "vocab.json");
    v->merges = sd_path_join(dir, "merges.txt");
    v->tj = sd_path_join(dir, "tokenizer.json");
    if (!v->vocab || !v->merges || !v->tj)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (sd_path_exists(v->vocab) && sd_path_exists(v->merges))
        return SD_OK;
    if (!sd_path_exists(v->tj))
        return sd_fail(err, SD_ERR_MISSING, "%s: neither vocab.json and merges.txt nor tokenizer.json", dir);
    v->doc = load_json(v->tj, err);
    if (!v->doc)
        return SD_ERR_FORMAT;
    v->model = json_object_get(v->doc, "model");
    json_t *type = json_object_get(v->model, "type");
    if (!json_is_object(v->model) || !json_is_string(type) || strcmp(json_string_value(type), "BPE"))
        return sd_fail(err, SD_ERR_FORMAT, "%s: model is not a BPE tokenizer", v->tj);
    return SD_OK;
}

static sd_status load_vocab(sd_clip_tokenizer *t, const vocab_source *v, sd_error *err)
{
    if (v->doc)
        return vocab_from_json(t, json_object_get(v->model, "vocab"), v->tj, err);
    json_t *doc = load_json(v->vocab, err);
    sd_status st = doc ? vocab_from_json(t, doc, v->vocab, err) : SD_ERR_FORMAT;
    json_decref(doc);
    return st;
}

static sd_status load_merges(sd_clip_tokenizer *t, const vocab_source *v, sd_error *err)
{
    return v->doc ? merges_from_json(t, json_object_get(v->model, "merges"), v->tj, err)
                  : merges_from_text(t, v->merges, err);
}

/* Reads a special token (a string or {"content": ...}) from a JSON object. */
static const char *special_content(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static sd_status add_special(sd_clip_tokenizer *t, const char *text, int32_t *id_out, const char *what,
                             const char *dir, sd_error *err)
{
    int32_t id;
    if (!sd_strmap_get(&t->vocab, text, strlen(text), &id))
        return sd_fail(err, SD_ERR_FORMAT, "%s: %s token '%s' is not in vocab.json", dir, what, text);
    *id_out = id;
    for (int i = 0; i < t->nspecial; i++)
        if (strcmp(t->special[i].text, text) == 0)
            return SD_OK;
    special_token *s = &t->special[t->nspecial++];
    s->text = strdup(text);
    s->len = strlen(text);
    s->id = id;
    return s->text ? SD_OK : sd_fail(err, SD_ERR_NOMEM, "out of memory");
}

static sd_status load_specials(sd_clip_tokenizer *t, const char *dir, sd_error *err)
{
    const char *names[4] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"};
    const char *keys[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    json_t *docs[2] = {NULL, NULL};
    const char *files[2] = {"special_tokens_map.json", "tokenizer_config.json"};
    t->max_length = 77;
    for (int f = 0; f < 2; f++) {
        char *p = sd_path_join(dir, files[f]);
        if (p && sd_path_exists(p)) {
            json_error_t jerr;
            docs[f] = json_load_file(p, 0, &jerr);
            if (!docs[f] || !json_is_object(docs[f])) {
                sd_status st = sd_fail(err, SD_ERR_FORMAT, "%s: invalid JSON: %s", p, jerr.text);
                json_decref(docs[f]);
                json_decref(docs[0]);
                free(p);
                return st;
            }
        }
        free(p);
    }
    for (int k = 0; k < 4; k++)
        for (int f = 1; f >= 0; f--) /* special_tokens_map.json wins */
            if (docs[f] && special_content(docs[f], keys[k]))
                names[k] = special_content(docs[f], keys[k]);
    if (docs[1]) {
        json_t *ml = json_object_get(docs[1], "model_max_length");
        if (json_is_integer(ml) && json_integer_value(ml) >= 2 && json_integer_value(ml) <= 4096)
            t->max_length = (int)json_integer_value(ml);
    }
    int32_t *ids[4] = {&t->bos, &t->eos, &t->unk, &t->pad};
    sd_status st = SD_OK;
    for (int k = 0; k < 4 && st == SD_OK; k++)
        st = add_special(t, names[k], ids[k], keys[k], dir, err);
    json_decref(docs[0]);
    json_decref(docs[1]);
    /* longest first, so the split prefers the longest match at a position */
    for (int i = 0; i < t->nspecial; i++)
        for (int j = i + 1; j < t->nspecial; j++)
            if (t->special[j].len > t->special[i].len) {
                special_token tmp = t->special[i];
                t->special[i] = t->special[j];
                t->special[j] = tmp;
            }
    return st;
}

void sd_clip_tokenizer_free(sd_clip_tokenizer *t)
{
    if (!t)
        return;
    sd_strmap_free(&t->vocab);
    sd_u64map_free(&t->merges);
    sd_strmap_free(&t->cache);
    for (int i = 0; i < t->nspecial; i++)
        free(t->special[i].text);
    free(t->cache_ids);
    free(t->cps);
    free(t->cps2);
    free(t->sym);
    free(t->by_id);
    free(t);
}

sd_status sd_clip_tokenizer_load(sd_clip_tokenizer **out, const char *dir, sd_error *err)
{
    *out = NULL;
    if (!sd_path_is_dir(dir))
        return sd_fail(err, SD_ERR_MISSING, "%s: tokenizer folder not found", dir);
    sd_clip_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_strmap_init(&t->vocab);
    sd_u64map_init(&t->merges);
    sd_strmap_init(&t->cache);
    vocab_source src;
    sd_status st = vocab_source_open(&src, dir, err);
    if (st == SD_OK)
        st = load_vocab(t, &src, err);
    if (st == SD_OK)
        st = load_specials(t, dir, err);
    if (st == SD_OK) /* after the specials: a merge into an unknown token takes unk's id */
        st = load_merges(t, &src, err);
    vocab_source_close(&src);
    if (st != SD_OK) {
        sd_clip_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SD_OK;
}

int sd_clip_tokenizer_max_length(const sd_clip_tokenizer *t) { return t->max_length; }
int32_t sd_clip_tokenizer_pad_id(const sd_clip_tokenizer *t) { return t->pad; }
int32_t sd_clip_tokenizer_bos_id(const sd_clip_tokenizer *t) { return t->bos; }
int32_t sd_clip_tokenizer_eos_id(const sd_clip_tokenizer *t) { return t->eos; }

/* ---- output buffer ---- */
typedef struct {
    int32_t *ids;
    int cap, n;
} id_sink;

static void sink_put(id_sink *s, int32_t id)
{
    if (s->n < s->cap)
        s->ids[s->n] = id;
    s->n++;
}

/* ---- BPE ---- */
static int ensure_sym(sd_clip_tokenizer *t, size_t n)
{
    if (n <= t->sym_cap)
        return 0;
    int32_t *ns = realloc(t->sym, n * 2 * sizeof *ns);
    if (!ns)
        return -1;
    t->sym = ns;
    t->sym_cap = n * 2;
    return 0;
}

/* Applies the merges to one word (its raw UTF-8 bytes) and emits its ids,
 * through the word cache. */
static sd_status bpe_word(sd_clip_tokenizer *t, const char *word, size_t len, id_sink *out, sd_error *err)
{
    int32_t off;
    if (sd_strmap_get(&t->cache, word, len, &off)) {
        int32_t cnt = t->cache_ids[off];
        for (int32_t i = 0; i < cnt; i++)
            sink_put(out, t->cache_ids[off + 1 + i]);
        return SD_OK;
    }
    if (ensure_sym(t, len) != 0)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    int32_t *sym = t->sym;
    size_t n = len;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)word[i];
        sym[i] = i + 1 == len ? t->byte_end_id[b] : t->byte_id[b];
    }
    while (n > 1) {
        uint64_t best = UINT64_MAX;
        for (size_t i = 0; i + 1 < n; i++) {
            uint64_t v;
            if (sd_u64map_get(&t->merges, ((uint64_t)(uint32_t)sym[i] << 32) | (uint32_t)sym[i + 1], &v) &&
                v < best)
                best = v;
        }
        if (best == UINT64_MAX)
            break;
        /* merge every occurrence of the best pair, left to right */
        uint64_t v;
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n &&
                sd_u64map_get(&t->merges, ((uint64_t)(uint32_t)sym[i] << 32) | (uint32_t)sym[i + 1], &v) &&
                (v >> 32) == (best >> 32)) {
                sym[w++] = (int32_t)(uint32_t)v;
                i += 2;
            } else {
                sym[w++] = sym[i++];
            }
        }
        n = w;
    }
    for (size_t i = 0; i < n; i++)
        sink_put(out, sym[i]);
    if (t->cache.n >= WORD_CACHE_LIMIT) {
        sd_strmap_clear(&t->cache);
        t->cache_len = 0;
    }
    if (t->cache_len + n + 1 > t->cache_cap) {
        size_t nc = t->cache_cap ? t->cache_cap * 2 : 4096;
        while (nc < t->cache_len + n + 1)
            nc *= 2;
        int32_t *nb = realloc(t->cache_ids, nc * sizeof *nb);
        if (!nb)
            return SD_OK; /* caching is an optimisation only */
        t->cache_ids = nb;
        t->cache_cap = nc;
    }
    t->cache_ids[t->cache_len] = (int32_t)n;
    memcpy(t->cache_ids + t->cache_len + 1, sym, n * sizeof *sym);
    if (sd_strmap_put(&t->cache, word, len, (int32_t)t->cache_len) == 0)
        t->cache_len += n + 1;
    return SD_OK;
}

/* ---- BasicTokenizer clean-up ---- */
static int is_chinese_char(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static int is_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return 0;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CN ||
           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

/* BasicTokenizer._is_whitespace */
static int is_basic_whitespace(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ZS;
}

/* Python's str.isspace(), used by str.split() and the regex's \s */
static int is_py_space(uint32_t c)
{
    if (c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f) || c == 0x85)
        return 1;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

static int is_letter(uint32_t c)
{
    if (c < 0x80)
        return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

static int is_number(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
}

static int is_cased_letter(uint32_t c)
{
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

static int ensure_cps(sd_clip_tokenizer *t, size_t n)
{
    if (n <= t->cps_cap)
        return 0;
    size_t nc = n * 2 + 64;
    uint32_t *a = realloc(t->cps, nc * sizeof *a);
    if (!a)
        return -1;
    t->cps = a;
    uint32_t *b = realloc(t->cps2, nc * sizeof *b);
    if (!b)
        return -1;
    t->cps2 = b;
    t->cps_cap = nc;
    return 0;
}

/* NFC-normalises cps[0..*n) in place (through UTF-8, as utf8proc works). */
static sd_status nfc(sd_clip_tokenizer *t, size_t *n, sd_error *err)
{
    size_t n0 = *n;
    int ascii = 1;
    for (size_t i = 0; i < n0 && ascii; i++)
        ascii = t->cps[i] < 0x80;
    if (ascii)
        return SD_OK;
    char *buf = malloc(n0 * 4 + 1);
    if (!buf)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    size_t len = 0;
    for (size_t i = 0; i < n0; i++)
        len += utf8_put(buf + len, t->cps[i]);
    buf[len] = '\0';
    utf8proc_uint8_t *norm = utf8proc_NFC((const utf8proc_uint8_t *)buf);
    free(buf);
    if (!norm)
        return sd_fail(err, SD_ERR_NOMEM, "NFC normalisation failed");
    size_t m = 0;
    const utf8proc_uint8_t *p = norm;
    while (*p) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p, -1, &c);
        if (k <= 0)
            break;
        if (ensure_cps(t, m + 1) != 0) {
            free(norm);
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        }
        t->cps[m++] = (uint32_t)c;
        p += k;
    }
    free(norm);
    *n = m;
    return SD_OK;
}

/* Python str.lower(): simple mappings, plus U+0130 -> "i\u0307" and the
 * final-sigma rule. Reads cps, writes cps2, returns the new length. */
static size_t py_lower(sd_clip_tokenizer *t, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = t->cps[i];
        if (c < 0x80) {
            t->cps2[m++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        } else if (c == 0x130) {
            t->cps2[m++] = 'i';
            t->cps2[m++] = 0x307;
        } else if (c == 0x3A3) {
            int after_cased = i > 0 && is_cased_letter(t->cps[i - 1]);
            int before_cased = i + 1 < n && is_cased_letter(t->cps[i + 1]);
            t->cps2[m++] = (after_cased && !before_cased) ? 0x3C2 : 0x3C3;
        } else {
            t->cps2[m++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    return m;
}

static int match_ascii(const uint32_t *cps, size_t n, size_t i, const char *s)
{
    size_t k = 0;
    for (; s[k]; k++)
        if (i + k >= n || cps[i + k] != (uint32_t)(unsigned char)s[k])
            return 0;
    return (int)k;
}

/* CLIP's pattern, evaluated at position i of cps (lower-cased text):
 * <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * Returns the match length (0 when cps[i] is whitespace). */
static size_t regex_match(const uint32_t *cps, size_t n, size_t i)
{
    static const char *fixed[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++) {
        int l = match_ascii(cps, n, i, fixed[k]);
        if (l)
            return (size_t)l;
    }
    uint32_t c = cps[i];
    if (is_letter(c)) {
        size_t j = i + 1;
        while (j < n && is_letter(cps[j]))
            j++;
        return j - i;
    }
    if (is_number(c))
        return 1;
    if (is_py_space(c))
        return 0;
    size_t j = i + 1;
    while (j < n && !is_py_space(cps[j]) && !is_letter(cps[j]) && !is_number(cps[j]))
        j++;
    return j - i;
}

/* Tokenizes a piece of text that holds no special token. */
static sd_status encode_chunk(sd_clip_tokenizer *t, const char *s, size_t len, id_sink *out, sd_error *err)
{
    /* decode + clean + CJK spacing */
    if (ensure_cps(t, len * 3 + 8) != 0)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    size_t n = 0, pos = 0;
    while (pos < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + pos, (utf8proc_ssize_t)(len - pos), &c);
        if (k <= 0)
            return sd_fail(err, SD_ERR_INVALID, "prompt is not valid UTF-8 (at byte %zu)", pos);
        pos += (size_t)k;
        uint32_t cp = (uint32_t)c;
        if (cp == 0 || cp == 0xFFFD || is_control(cp))
            continue;
        if (is_basic_whitespace(cp)) {
            t->cps[n++] = ' ';
        } else if (is_chinese_char(cp)) {
            t->cps[n++] = ' ';
            t->cps[n++] = cp;
            t->cps[n++] = ' ';
        } else {
            t->cps[n++] = cp;
        }
    }
    SD_TRY(nfc(t, &n, err));
    if (ensure_cps(t, n * 2 + 8) != 0)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    n = py_lower(t, n);
    const uint32_t *cps = t->cps2;
    char word[1024];
    for (size_t i = 0; i < n;) {
        size_t m = regex_match(cps, n, i);
        if (m == 0) {
            i++;
            continue;
        }
        /* a word's UTF-8 bytes; overly long runs are cut into pieces of
         * whole characters (no real prompt has a 250-character word) */
        size_t wl = 0;
        for (size_t k = i; k < i + m; k++) {
            if (wl + 4 > sizeof word) {
                SD_TRY(bpe_word(t, word, wl, out, err));
                wl = 0;
            }
            wl += utf8_put(word + wl, cps[k]);
        }
        SD_TRY(bpe_word(t, word, wl, out, err));
        i += m;
    }
    return SD_OK;
}

static sd_status encode(sd_clip_tokenizer *t, const char *text, id_sink *out, sd_error *err)
{
    size_t len = strlen(text), start = 0;
    for (size_t i = 0; i < len;) {
        const special_token *hit = NULL;
        for (int k = 0; k < t->nspecial && !hit; k++)
            if (len - i >= t->special[k].len && memcmp(text + i, t->special[k].text, t->special[k].len) == 0)
                hit = &t->special[k];
        if (!hit) {
            i++;
            continue;
        }
        if (i > start)
            SD_TRY(encode_chunk(t, text + start, i - start, out, err));
        sink_put(out, hit->id);
        i += hit->len;
        start = i;
    }
    if (len > start)
        SD_TRY(encode_chunk(t, text + start, len - start, out, err));
    return SD_OK;
}

sd_status sd_clip_encode(sd_clip_tokenizer *t, const char *text, int32_t *ids, int cap, int *n, sd_error *err)
{
    id_sink sink = {ids, cap, 0};
    sd_status st = encode(t, text, &sink, err);
    *n = sink.n;
    return st;
}

sd_status sd_clip_tokenize(sd_clip_tokenizer *t, const char *text, int64_t *ids, int *untruncated_len,
                           sd_error *err)
{
    int body = t->max_length - 2;
    int32_t tmp[4096];
    id_sink sink = {tmp, (int)(sizeof tmp / sizeof tmp[0]), 0};
    SD_TRY(encode(t, text, &sink, err));
    int keep = sink.n < body ? sink.n : body;
    int k = 0;
    ids[k++] = t->bos;
    for (int i = 0; i < keep; i++)
        ids[k++] = tmp[i];
    ids[k++] = t->eos;
    while (k < t->max_length)
        ids[k++] = t->pad;
    if (untruncated_len)
        *untruncated_len = sink.n + 2;
    return SD_OK;
}

const char *sd_clip_token_text(sd_clip_tokenizer *t, int32_t id, size_t *len)
{
    if (!t->by_id) {
        int32_t top = -1;
        for (size_t e = 0; e < t->vocab.n; e++)
            top = t->vocab.entries[e].value > top ? t->vocab.entries[e].value : top;
        t->by_id = malloc((size_t)(top + 1) * sizeof *t->by_id);
        if (!t->by_id)
            return NULL;
        t->n_ids = top + 1;
        for (int32_t i = 0; i < t->n_ids; i++)
            t->by_id[i] = -1;
        for (size_t e = 0; e < t->vocab.n; e++)
            t->by_id[t->vocab.entries[e].value] = (int32_t)e;
    }
    if (id < 0 || id >= t->n_ids || t->by_id[id] < 0)
        return NULL;
    const struct sd_strmap_entry *e = &t->vocab.entries[t->by_id[id]];
    *len = e->key_len;
    return t->vocab.arena + e->key_off;
}

/* The text of the tokens past what fits (max_length - 2), as transformers'
 * CLIPTokenizer decodes them: the tokens' byte-level characters joined,
 * mapped back to bytes, "</w>" read as a space, trimmed. */
sd_status sd_clip_dropped_text(sd_clip_tokenizer *t, const char *text, char *out, size_t len, int *dropped,
                               sd_error *err)
{
    int32_t tmp[4096];
    id_sink sink = {tmp, (int)(sizeof tmp / sizeof tmp[0]), 0};
    SD_TRY(encode(t, text, &sink, err));
    int body = t->max_length - 2, n = sink.n < sink.cap ? sink.n : sink.cap;
    *dropped = sink.n > body ? sink.n - body : 0;
    if (len)
        out[0] = 0;
    if (!*dropped || !len)
        return SD_OK;
    /* id -> token text, from the vocabulary's entries */
    uint32_t table[256];
    bytes_to_unicode(table);
    size_t o = 0;
    for (int i = body; i < n && o + 1 < len; i++) {
        size_t tl = 0;
        const char *tok = sd_clip_token_text(t, tmp[i], &tl);
        for (size_t p = 0; tok && p < tl && o + 1 < len;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t step = utf8proc_iterate((const utf8proc_uint8_t *)tok + p, (utf8proc_ssize_t)(tl - p), &cp);
            if (step <= 0)
                break;
            p += (size_t)step;
            if (cp == '<' && tl - p >= 3 && !memcmp(tok + p, "/w>", 3)) {
                out[o++] = ' ';
                p += 3;
                continue;
            }
            for (int b = 0; b < 256; b++)
                if (table[b] == (uint32_t)cp) {
                    out[o++] = (char)b;
                    break;
                }
        }
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = 0;
    return SD_OK;
}
