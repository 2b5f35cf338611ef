/* json_config.c - see json_config.h. */
#include "json_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

json_t *sd_json_loads_python(const char *text, size_t len, size_t flags, json_error_t *jerr)
{
    /* each non-standard number token outside strings becomes null; "NaN"
     * is shorter than "null", so the text is copied, not edited in place */
    static const char *const toks[] = {"-Infinity", "Infinity", "NaN"};
    char *out = malloc(len + len / 3 + 4);
    if (!out) {
        if (jerr)
            snprintf(jerr->text, sizeof jerr->text, "out of memory");
        return NULL;
    }
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        if (in_str) {
            if (text[i] == '\\' && i + 1 < len)
                out[o++] = text[i++];
            else if (text[i] == '"')
                in_str = 0;
            out[o++] = text[i];
            continue;
        }
        if (text[i] == '"')
            in_str = 1;
        int replaced = 0;
        for (int k = 0; k < 3 && !in_str; k++) {
            size_t tl = strlen(toks[k]);
            if (len - i >= tl && !strncmp(text + i, toks[k], tl)) {
                memcpy(out + o, "null", 4);
                o += 4;
                i += tl - 1;
                replaced = 1;
                break;
            }
        }
        if (!replaced)
            out[o++] = text[i];
    }
    json_t *r = json_loadb(out, o, flags, jerr);
    free(out);
    return r;
}

sd_status sd_json_load_text(sd_json_doc *doc, const char *text, size_t len, const char *name, sd_error *err)
{
    memset(doc, 0, sizeof *doc);
    json_error_t jerr;
    doc->root = sd_json_loads_python(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc->root)
        return sd_fail(err, SD_ERR_FORMAT, "%s: invalid JSON at line %d: %s", name, jerr.line, jerr.text);
    if (!json_is_object(doc->root)) {
        json_decref(doc->root);
        doc->root = NULL;
        return sd_fail(err, SD_ERR_FORMAT, "%s: top level is not a JSON object", name);
    }
    doc->path = strdup(name);
    if (!doc->path) {
        json_decref(doc->root);
        doc->root = NULL;
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    return SD_OK;
}

sd_status sd_json_load(sd_json_doc *doc, const char *path, sd_error *err)
{
    memset(doc, 0, sizeof *doc);
    char *text = NULL;
    size_t len = 0;
    sd_error rerr;
    if (sd_read_file(path, &text, &len, &rerr) != SD_OK)
        return sd_fail(err, SD_ERR_MISSING, "%s: cannot read: %s", path, rerr.msg);
    sd_status st = sd_json_load_text(doc, text, len, path, err);
    free(text);
    return st;
}

void sd_json_free(sd_json_doc *doc)
{
    json_decref(doc->root);
    free(doc->path);
    memset(doc, 0, sizeof *doc);
}

static json_t *get(const sd_json_doc *d, const char *key)
{
    json_t *v = json_object_get(d->root, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

static sd_status missing(const sd_json_doc *d, const char *key, sd_error *err)
{
    return sd_fail(err, SD_ERR_MISSING, "%s: missing required key '%s'", d->path, key);
}

sd_status sd_json_int(const sd_json_doc *d, const char *key, long long *out, sd_error *err)
{
    json_t *v = get(d, key);
    if (!v)
        return missing(d, key, err);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return SD_OK;
    }
    /* 4.0 is an integer; a real out of long long's range is not (its cast
     * would be undefined: found by fuzz_json_config) */
    double r = json_is_real(v) ? json_real_value(v) : 0.5;
    if (r >= -9.2e18 && r <= 9.2e18 && r == (double)(long long)r) {
        *out = (long long)r;
        return SD_OK;
    }
    return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' must be an integer", d->path, key);
}

sd_status sd_json_int_in(const sd_json_doc *d, const char *key, long long lo, long long hi, long long *out,
                         sd_error *err)
{
    SD_TRY(sd_json_int(d, key, out, err));
    if (*out < lo || *out > hi)
        return sd_fail(err, SD_ERR_INVALID, "%s: '%s' = %lld is out of range (%lld to %lld)", d->path, key, *out, lo,
                       hi);
    return SD_OK;
}

sd_status sd_json_double(const sd_json_doc *d, const char *key, double *out, sd_error *err)
{
    json_t *v = get(d, key);
    if (!v)
        return missing(d, key, err);
    if (!json_is_number(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' must be a number", d->path, key);
    *out = json_number_value(v);
    return SD_OK;
}

sd_status sd_json_bool(const sd_json_doc *d, const char *key, int *out, sd_error *err)
{
    json_t *v = get(d, key);
    if (!v)
        return missing(d, key, err);
    if (!json_is_boolean(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' must be true or false", d->path, key);
    *out = json_is_true(v);
    return SD_OK;
}

sd_status sd_json_string(const sd_json_doc *d, const char *key, const char **out, sd_error *err)
{
    json_t *v = get(d, key);
    if (!v)
        return missing(d, key, err);
    if (!json_is_string(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' must be a string", d->path, key);
    *out = json_string_value(v);
    return SD_OK;
}

long long sd_json_int_or(const sd_json_doc *d, const char *key, long long dflt)
{
    long long v;
    return get(d, key) && sd_json_int(d, key, &v, NULL) == SD_OK ? v : dflt;
}

double sd_json_double_or(const sd_json_doc *d, const char *key, double dflt)
{
    double v;
    return get(d, key) && sd_json_double(d, key, &v, NULL) == SD_OK ? v : dflt;
}

int sd_json_bool_or(const sd_json_doc *d, const char *key, int dflt)
{
    int v;
    return get(d, key) && sd_json_bool(d, key, &v, NULL) == SD_OK ? v : dflt;
}

const char *sd_json_string_or(const sd_json_doc *d, const char *key, const char *dflt)
{
    json_t *v = get(d, key);
    return v && json_is_string(v) ? json_string_value(v) : dflt;
}

sd_status sd_json_int_array(const sd_json_doc *d, const char *key, int scalar_ok, long long *out, int n,
                            sd_error *err)
{
    json_t *v = get(d, key);
    if (!v)
        return missing(d, key, err);
    if (json_is_integer(v) && scalar_ok) {
        for (int i = 0; i < n; i++)
            out[i] = json_integer_value(v);
        return SD_OK;
    }
    if (!json_is_array(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' must be an array%s", d->path, key,
                       scalar_ok ? " or an integer" : "");
    if ((int)json_array_size(v) != n)
        return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' has %zu entries, expected %d", d->path, key,
                       json_array_size(v), n);
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_integer(e))
            return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s'[%d] must be an integer", d->path, key, i);
        out[i] = json_integer_value(e);
    }
    return SD_OK;
}

/* key's array of 1 to cap entries */
static sd_status get_list(const sd_json_doc *d, const char *key, int cap, json_t **v_out, int *n_out, sd_error *err)
{
    json_t *v = get(d, key);
    if (!v)
        return missing(d, key, err);
    if (!json_is_array(v))
        return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' must be an array", d->path, key);
    if ((int)json_array_size(v) > cap || json_array_size(v) == 0)
        return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s' has %zu entries (1 to %d supported)", d->path, key,
                       json_array_size(v), cap);
    *v_out = v;
    *n_out = (int)json_array_size(v);
    return SD_OK;
}

sd_status sd_json_int_list(const sd_json_doc *d, const char *key, long long *out, int cap, int *n_out,
                           sd_error *err)
{
    json_t *v;
    SD_TRY(get_list(d, key, cap, &v, n_out, err));
    return sd_json_int_array(d, key, 0, out, *n_out, err);
}

sd_status sd_json_string_list(const sd_json_doc *d, const char *key, const char **out, int cap, int *n_out,
                              sd_error *err)
{
    json_t *v;
    SD_TRY(get_list(d, key, cap, &v, n_out, err));
    for (int i = 0; i < *n_out; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        if (!json_is_string(e))
            return sd_fail(err, SD_ERR_FORMAT, "%s: key '%s'[%d] must be a string", d->path, key, i);
        out[i] = json_string_value(e);
    }
    return SD_OK;
}
