/* prompt_weights.c - see prompt_weights.h. compel parses with a pyparsing
 * grammar (compel/prompt_parser.py, build_parser_syntax); this is that
 * grammar by hand, alternative for alternative and in the same order, with
 * backtracking where pyparsing backtracks, because which alternative wins
 * decides what stays literal text: "(red)1.2" is a weight, "a(red)1.2" a
 * word. The parse builds a tree (groups carry weights, leaves carry text),
 * flattened as compel's flatten() does so weights multiply in its order.
 * tests/golden/data/compel holds compel's own parse of hand-picked and
 * random prompts; the test compares fragment for fragment. */
#include "worker/engine/text/prompt_weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/grow.h"

enum { NODE_TEXT, NODE_GROUP };

/* Preorder: a group's subtree is the `size` nodes after it. */
typedef struct {
    int kind;
    double weight; /* groups */
    char *text;    /* leaves */
    int size;
} node;

/* Packrat memo of the recursive alternatives (a parenthesised group, a
 * quoted one) by position: pyparsing tries a group up to three times at one
 * place (as .attend's target, as an implicit weight's, as itself), so
 * without it nested parentheses cost 3^depth. */
enum { MEMO_PAREN, MEMO_QUOTED, MEMO_KINDS };
enum { MEMO_UNKNOWN, MEMO_FAIL, MEMO_OK };
typedef struct {
    int state;
    size_t end;
    node *nodes; /* the subtree it made, to push again */
    int nn;
} memo_entry;

/* deeper than compel can parse (pyparsing recurses per level) and than a
 * thread's stack should hold */
#define MAX_DEPTH 200

typedef struct {
    const char *s;
    size_t n;
    node *v;
    int nv, cap;
    int nomem, too_deep, depth;
    memo_entry *memo[MEMO_KINDS]; /* n + 1 entries each */
} parser;

/* pyparsing skips " \n\t\r" before each element (and pp.White() is those) */
static int skip_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* Python's string.whitespace, which CharsNotIn excludes from words */
static int ascii_ws(char c)
{
    return skip_ws(c) || c == '\v' || c == '\f';
}

static int syntactic(char c)
{
    return c && strchr("()\",.+-=", c) != NULL;
}

/* Bytes of the UTF-8 character at s if Python's str.isspace() holds for it
 * (what \s and strip() use), else 0. */
static size_t py_space(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return ascii_ws((char)s[0]) || (s[0] >= 0x1c && s[0] <= 0x1f) ? 1 : 0;
    if (n >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0))
        return 2;
    if (n < 3)
        return 0;
    unsigned cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    if ((s[0] & 0xF0) != 0xE0)
        return 0;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
        cp == 0x205F || cp == 0x3000)
        return 3;
    return 0;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = py_space((const unsigned char *)s + i, n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

static size_t skip(const parser *p, size_t i)
{
    while (i < p->n && skip_ws(p->s[i]))
        i++;
    return i;
}

/* compel's Fragment(): \( \) \" become ( ) " */
static char *fragment_text(const char *t, size_t len)
{
    char *o = malloc(len + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == '\\' && i + 1 < len && (t[i + 1] == '(' || t[i + 1] == ')' || t[i + 1] == '"'))
            i++;
        o[k++] = t[i];
    }
    o[k] = 0;
    return o;
}

static int push(parser *p, int kind, const char *t, size_t len)
{
    if (sd_grow((void **)&p->v, &p->cap, p->nv, sizeof *p->v, 32)) {
        p->nomem = 1;
        return -1;
    }
    node *nd = &p->v[p->nv];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->weight = 1.0;
    if (kind == NODE_TEXT && !(nd->text = fragment_text(t, len))) {
        p->nomem = 1;
        return -1;
    }
    return p->nv++;
}

/* backtracking: drops the nodes made since `nv` */
static int restore(parser *p, int nv)
{
    while (p->nv > nv)
        free(p->v[--p->nv].text);
    return 0;
}

static void close_group(parser *p, int g)
{
    p->v[g].size = p->nv - g - 1;
}

static int memo_init(parser *p)
{
    for (int k = 0; k < MEMO_KINDS; k++)
        if (!(p->memo[k] = calloc(p->n + 1, sizeof *p->memo[k])))
            return -1;
    return 0;
}

static void memo_free(parser *p)
{
    for (int k = 0; k < MEMO_KINDS; k++) {
        for (size_t i = 0; p->memo[k] && i <= p->n; i++) {
            for (int j = 0; j < p->memo[k][i].nn; j++)
                free(p->memo[k][i].nodes[j].text);
            free(p->memo[k][i].nodes);
        }
        free(p->memo[k]);
        p->memo[k] = NULL;
    }
}

/* a known outcome at i: 1 pushed again (success), 0 failed, -1 unknown */
static int memo_replay(parser *p, int kind, size_t i, size_t *end)
{
    memo_entry *m = &p->memo[kind][i];
    if (m->state == MEMO_UNKNOWN)
        return -1;
    if (m->state == MEMO_FAIL)
        return 0;
    int nv = p->nv;
    for (int j = 0; j < m->nn; j++) {
        if (sd_grow((void **)&p->v, &p->cap, p->nv, sizeof *p->v, 32)) {
            p->nomem = 1;
            return restore(p, nv);
        }
        node *d = &p->v[p->nv];
        *d = m->nodes[j];
        /* the text as stored: unescaped once already */
        if (d->text && !(d->text = strdup(d->text))) {
            p->nomem = 1;
            return restore(p, nv);
        }
        p->nv++;
    }
    *end = m->end;
    return 1;
}

/* records the outcome of `kind` at i: nodes [from, p->nv) on success */
static int memo_store(parser *p, int kind, size_t i, int ok, int from, size_t end)
{
    memo_entry *m = &p->memo[kind][i];
    m->state = ok ? MEMO_OK : MEMO_FAIL;
    m->end = end;
    if (!ok || p->nv == from)
        return ok;
    m->nodes = calloc((size_t)(p->nv - from), sizeof *m->nodes);
    if (!m->nodes) {
        p->nomem = 1;
        m->state = MEMO_UNKNOWN;
        return ok;
    }
    for (int j = from; j < p->nv; j++) {
        node *d = &m->nodes[m->nn];
        *d = p->v[j];
        if (d->text && !(d->text = strdup(d->text))) {
            p->nomem = 1;
            break;
        }
        m->nn++;
    }
    return ok;
}

/* non_syntax_word: escaped syntax, '+'/'-' glued to a following ordinary
 * character, digits, any other character that is neither whitespace nor
 * syntax; no whitespace inside. */
static int non_syntax_word(parser *p, size_t i, size_t *end)
{
    i = skip(p, i);
    size_t j = i;
    while (j < p->n) {
        char c = p->s[j];
        if (c == '\\' && j + 1 < p->n && syntactic(p->s[j + 1]))
            j += 2;
        else if ((c == '+' || c == '-') && j + 1 < p->n && !skip_ws(p->s[j + 1]) && !syntactic(p->s[j + 1]))
            j++;
        else if (!ascii_ws(c) && !syntactic(c))
            j++;
        else
            break;
    }
    if (j == i || push(p, NODE_TEXT, p->s + i, j - i) < 0)
        return 0;
    *end = j;
    return 1;
}

/* free_word: any run of non-whitespace, syntax and all (top level only) */
static int free_word(parser *p, size_t i, size_t *end)
{
    i = skip(p, i);
    size_t j = i;
    while (j < p->n && !ascii_ws(p->s[j]))
        j++;
    if (j == i || push(p, NODE_TEXT, p->s + i, j - i) < 0)
        return 0;
    *end = j;
    return 1;
}

/* pyparsing_common.real ([+-]?(\d+\.\d*|\.\d+)) or an integer; the sign
 * never reaches here: '+' and '-' runs are tried first */
static int number(const parser *p, size_t i, size_t *end, double *val)
{
    size_t j = i;
    while (j < p->n && p->s[j] >= '0' && p->s[j] <= '9')
        j++;
    if (j < p->n && p->s[j] == '.') {
        size_t k = j + 1;
        while (k < p->n && p->s[k] >= '0' && p->s[k] <= '9')
            k++;
        if (j > i || k > j + 1)
            j = k;
    }
    if (j == i)
        return 0;
    char buf[64];
    size_t len = j - i < sizeof buf - 1 ? j - i : sizeof buf - 1;
    memcpy(buf, p->s + i, len);
    buf[len] = 0;
    *val = strtod(buf, NULL);
    *end = j;
    return 1;
}

/* a run of '+' (1.1^n) or '-' (0.9^n), or a number */
static int weight_op(const parser *p, size_t i, int signs_only, size_t *end, double *w)
{
    i = skip(p, i);
    if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) {
        char c = p->s[i];
        size_t j = i;
        while (j < p->n && p->s[j] == c)
            j++;
        *w = pow(c == '+' ? 1.1 : 0.9, (double)(j - i));
        *end = j;
        return 1;
    }
    return !signs_only && number(p, i, end, w);
}

static int fragment_parts(parser *p, size_t i, size_t *end);

static int paren(parser *p, size_t i, size_t *end)
{
    int nv = p->nv;
    i = skip(p, i);
    if (i >= p->n || p->s[i] != '(')
        return 0;
    int known = memo_replay(p, MEMO_PAREN, i, end);
    if (known >= 0)
        return known;
    if (p->depth >= MAX_DEPTH) {
        p->too_deep = 1;
        return 0;
    }
    p->depth++;
    int g = push(p, NODE_GROUP, NULL, 0);
    size_t j = i;
    if (g >= 0) {
        fragment_parts(p, i + 1, &j);
        j = skip(p, j);
    }
    p->depth--;
    if (g < 0 || j >= p->n || p->s[j] != ')' || p->nomem || p->too_deep)
        return memo_store(p, MEMO_PAREN, i, restore(p, nv), nv, 0);
    close_group(p, g);
    *end = j + 1;
    return memo_store(p, MEMO_PAREN, i, 1, nv, *end);
}

/* "...": `\"` inside, no line breaks; \t \n \f \r written as two
 * characters become those characters (pyparsing's QuotedString), then the
 * inside parses as a parenthesised group's does and must parse whole.
 * QuotedString is the regex "(?:\\"|[^"\n\r])*": greedy, and when no bare
 * quote closes it, backtracking reads the last \" as a backslash and the
 * closing quote. */
static int quoted(parser *p, size_t i, size_t *end)
{
    int nv = p->nv;
    i = skip(p, i);
    if (i >= p->n || p->s[i] != '"')
        return 0;
    size_t j = i + 1, last_escape = 0;
    while (j < p->n) {
        if (p->s[j] == '\\' && j + 1 < p->n && p->s[j + 1] == '"') {
            last_escape = j + 1;
            j += 2;
        } else if (p->s[j] != '"' && p->s[j] != '\n' && p->s[j] != '\r') {
            j++;
        } else {
            break;
        }
    }
    if ((j >= p->n || p->s[j] != '"') && last_escape)
        j = last_escape;
    if (j >= p->n || p->s[j] != '"')
        return 0;
    int known = memo_replay(p, MEMO_QUOTED, i, end);
    if (known >= 0)
        return known;
    size_t len = j - i - 1;
    char *in = malloc(len + 1);
    if (!in) {
        p->nomem = 1;
        return 0;
    }
    size_t k = 0;
    for (size_t a = i + 1; a < j; a++) {
        const char *ws = "\t\n\f\r", *names = "tnfr", *hit;
        if (p->s[a] == '\\' && a + 1 < j && p->s[a + 1] && (hit = strchr(names, p->s[a + 1]))) {
            in[k++] = ws[hit - names];
            a++;
        } else {
            in[k++] = p->s[a];
        }
    }
    in[k] = 0;
    int g = push(p, NODE_GROUP, NULL, 0), ok = g >= 0;
    if (ok && blank(in, k)) {
        ok = push(p, NODE_TEXT, "", 0) >= 0;
    } else if (ok && p->depth >= MAX_DEPTH) {
        p->too_deep = 1;
        ok = 0;
    } else if (ok) {
        /* the inside is another string: a parser (and memo) of its own
         * that appends to the same nodes */
        parser sub = {.s = in, .n = k, .v = p->v, .nv = p->nv, .cap = p->cap, .depth = p->depth + 1};
        size_t e = 0;
        if (memo_init(&sub))
            sub.nomem = 1;
        else
            fragment_parts(&sub, 0, &e);
        e = skip(&sub, e);
        ok = e == sub.n && !sub.nomem && !sub.too_deep;
        memo_free(&sub);
        p->v = sub.v;
        p->nv = sub.nv;
        p->cap = sub.cap;
        p->nomem |= sub.nomem;
        p->too_deep |= sub.too_deep;
    }
    free(in);
    if (!ok)
        return memo_store(p, MEMO_QUOTED, i, restore(p, nv), nv, 0);
    close_group(p, g);
    *end = j + 1;
    return memo_store(p, MEMO_QUOTED, i, 1, nv, *end);
}

/* target.attend(weight), or a quoted/parenthesised target with a weight
 * glued to it, or a bare word with a glued '+'/'-' run */
static int attention(parser *p, size_t i, size_t *end)
{
    int nv = p->nv;
    int g = push(p, NODE_GROUP, NULL, 0);
    if (g < 0)
        return 0;
    size_t j, k;
    double w;
    /* explicit: (quoted | paren | word) .attend ( weight ) */
    if (quoted(p, i, &j) || paren(p, i, &j) || non_syntax_word(p, i, &j)) {
        size_t a = skip(p, j);
        if (p->n - a >= 7 && !memcmp(p->s + a, ".attend", 7)) {
            a = skip(p, a + 7);
            if (a < p->n && p->s[a] == '(' && weight_op(p, a + 1, 0, &k, &w)) {
                k = skip(p, k);
                if (k < p->n && p->s[k] == ')') {
                    p->v[g].weight = w;
                    close_group(p, g);
                    *end = k + 1;
                    return 1;
                }
            }
        }
    }
    restore(p, nv + 1);
    /* implicit: no whitespace between the target and its weight */
    int bracketed = quoted(p, i, &j) || paren(p, i, &j);
    if (!bracketed) {
        restore(p, nv + 1);
        if (!non_syntax_word(p, i, &j))
            return restore(p, nv);
    }
    if ((j < p->n && skip_ws(p->s[j])) || !weight_op(p, j, !bracketed, &k, &w))
        return restore(p, nv);
    p->v[g].weight = w;
    close_group(p, g);
    *end = k;
    return 1;
}

/* what a parenthesised group holds: weighted parts, groups, quotes, words,
 * and lone commas and periods, as long as they match */
static int fragment_parts(parser *p, size_t i, size_t *end)
{
    for (;;) {
        size_t j, a = skip(p, i);
        if (attention(p, i, &j) || paren(p, i, &j) || quoted(p, i, &j) || non_syntax_word(p, i, &j)) {
            i = j;
            continue;
        }
        if (a < p->n && (p->s[a] == ',' || p->s[a] == '.') && push(p, NODE_TEXT, p->s + a, 1) >= 0) {
            i = a + 1;
            continue;
        }
        break;
    }
    *end = i;
    return 1;
}

/* ---- flatten and fuse (compel's flatten(): weights multiply from the
 * outside in; neighbours of equal weight join with a space) ---- */

static sd_status emit(sd_prompt_fragments *out, const char *text, double w, sd_error *err)
{
    if (out->n > 0 && out->items[out->n - 1].weight == w) {
        sd_prompt_fragment *last = &out->items[out->n - 1];
        size_t a = strlen(last->text), b = strlen(text);
        char *joined = malloc(a + b + 2);
        if (!joined)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        memcpy(joined, last->text, a);
        joined[a] = ' ';
        memcpy(joined + a + 1, text, b + 1);
        /* compel builds a new Fragment from the joined text, which
         * unescapes once more */
        char *again = fragment_text(joined, a + b + 1);
        free(joined);
        if (!again)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        free(last->text);
        last->text = again;
        return SD_OK;
    }
    if (sd_grow((void **)&out->items, &out->cap, out->n, sizeof *out->items, 8))
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    char *t = strdup(text);
    if (!t)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    out->items[out->n++] = (sd_prompt_fragment){t, w};
    return SD_OK;
}

static sd_status flatten(const parser *p, int at, double scale, sd_prompt_fragments *out, sd_error *err)
{
    const node *nd = &p->v[at];
    if (nd->kind == NODE_TEXT)
        return emit(out, nd->text, 1.0 * scale, err);
    double inner = scale * nd->weight;
    for (int c = at + 1; c <= at + nd->size; c += 1 + p->v[c].size)
        SD_TRY(flatten(p, c, inner, out, err));
    return SD_OK;
}

/* compel's operators beyond weights, refused by name */
static const char *refused_operator(const char *s)
{
    static const char *ops[] = {".blend", ".and", ".add", ".swap", "useLora", "withLora"};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        for (const char *at = strstr(s, ops[k]); at; at = strstr(at + 1, ops[k])) {
            const char *q = at + strlen(ops[k]);
            while (skip_ws(*q))
                q++;
            if (*q == '(')
                return ops[k];
        }
    return NULL;
}

/* re.sub(r',(\S)', r', \1', prompt) */
static char *space_after_commas(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(2 * n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        o[k++] = s[i];
        if (s[i] == ',' && i + 1 < n && !py_space((const unsigned char *)s + i + 1, n - i - 1)) {
            o[k++] = ' ';
            /* the \S character is consumed by the match: a comma right
             * after it is not looked at again */
            size_t len = 1;
            while (i + 1 + len < n && ((unsigned char)s[i + 1 + len] & 0xC0) == 0x80)
                len++;
            memcpy(o + k, s + i + 1, len);
            k += len;
            i += len;
        }
    }
    o[k] = 0;
    return o;
}

void sd_prompt_fragments_free(sd_prompt_fragments *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->items[i].text);
    free(f->items);
    memset(f, 0, sizeof *f);
}

sd_status sd_prompt_parse_compel(const char *prompt, sd_prompt_fragments *out, sd_error *err)
{
    memset(out, 0, sizeof *out);
    const char *op = refused_operator(prompt);
    if (op)
        return sd_fail(err, SD_ERR_UNSUPPORTED,
                       "--long-prompts: compel's %s() is not supported (weights only: word+, word-, (words)1.2, "
                       "\"words\"0.8, word.attend(1.3)); write \\( to keep a parenthesis as text",
                       op);
    char *s = space_after_commas(prompt);
    if (!s)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = SD_OK;
    if (blank(s, strlen(s))) {
        free(s);
        return emit(out, "", 1.0, err);
    }
    parser p = {.s = s, .n = strlen(s)};
    int root = memo_init(&p) ? -1 : push(&p, NODE_GROUP, NULL, 0);
    size_t i = 0;
    while (root >= 0 && !p.nomem) {
        size_t j;
        i = skip(&p, i);
        if (i >= p.n)
            break;
        if (attention(&p, i, &j) || quoted(&p, i, &j) || paren(&p, i, &j) || free_word(&p, i, &j)) {
            i = j;
            continue;
        }
        if (p.too_deep)
            st = sd_fail(err, SD_ERR_INVALID, "--long-prompts: parentheses or quotes nested deeper than %d", MAX_DEPTH);
        else if (!p.nomem)
            st = sd_fail(err, SD_ERR_INVALID, "--long-prompts: compel cannot parse the prompt at byte %zu: \"%.40s\"",
                         i, s + i);
        break;
    }
    if (st == SD_OK && p.too_deep)
        st = sd_fail(err, SD_ERR_INVALID, "--long-prompts: parentheses or quotes nested deeper than %d", MAX_DEPTH);
    if (st == SD_OK && (root < 0 || p.nomem))
        st = sd_fail(err, SD_ERR_NOMEM, "out of memory");
    if (st == SD_OK) {
        close_group(&p, root);
        st = flatten(&p, root, 1.0, out, err);
    }
    if (st == SD_OK && out->n == 0)
        st = sd_fail(err, SD_ERR_INVALID, "--long-prompts: the prompt \"%.60s\" holds no text once parsed", prompt);
    restore(&p, 0);
    memo_free(&p);
    free(p.v);
    free(s);
    if (st != SD_OK)
        sd_prompt_fragments_free(out);
    return st;
}
