/* model_spec.c - see model_spec.h. */
#include "common/model_spec.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/builtin_models.h"
#include "common/fsutil.h"
#include "common/hashmap.h"
#include "common/model_identity.h"

sd_status sd_model_spec_add_lora(sd_model_spec *spec, const char *arg, sd_error *err)
{
    if (spec->nloras == SD_MAX_LORAS)
        return sd_fail(err, SD_ERR_INVALID, "at most %d LoRAs", SD_MAX_LORAS);
    sd_lora_ref *r = &spec->loras[spec->nloras];
    r->scale = 1.0f;
    const char *colon = strrchr(arg, ':');
    size_t len = strlen(arg);
    if (colon && colon[1]) {
        char *end;
        double v = strtod(colon + 1, &end);
        if (!*end && end != colon + 1) {
            if (!isfinite(v) || fabs(v) > 1000)
                return sd_fail(err, SD_ERR_INVALID, "'%s': the scale must be a finite number (|scale| <= 1000)", arg);
            r->scale = (float)v;
            len = (size_t)(colon - arg);
        }
    }
    if (len == 0 || len >= sizeof r->path)
        return sd_fail(err, SD_ERR_INVALID, "'%s': give FILE or FILE:SCALE", arg);
    memcpy(r->path, arg, len);
    r->path[len] = 0;
    if (!sd_path_exists(r->path) || sd_path_is_dir(r->path))
        return sd_fail(err, SD_ERR_MISSING, "%s: no such LoRA file", r->path);
    spec->nloras++;
    return SD_OK;
}

sd_status sd_model_spec_for_item(const sd_model_spec *base, const char *loras, const char *vae, sd_model_spec *out,
                                 sd_error *err)
{
    *out = *base;
    if (vae) {
        if (!*vae || !sd_path_exists(vae))
            return sd_fail(err, SD_ERR_MISSING, "vae: '%s': no such folder or file", vae);
        out->vae = vae;
    }
    for (const char *p = loras; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[1100];
        if (len == 0 || len >= sizeof one)
            return sd_fail(err, SD_ERR_INVALID, "loras: '%s': give FILE[:SCALE] separated by commas", loras);
        memcpy(one, p, len);
        one[len] = 0;
        sd_status st = sd_model_spec_add_lora(out, one, err);
        if (st != SD_OK)
            return sd_error_prefix(err, st, "loras: ");
        p = comma ? comma + 1 : p + len;
    }
    return SD_OK;
}

void sd_model_spec_key(const sd_model_spec *spec, char *out, size_t len)
{
    int n = snprintf(out, len, "vae=%s", spec->vae ? spec->vae : "");
    for (int i = 0; i < spec->nloras && n >= 0 && (size_t)n < len; i++)
        n += snprintf(out + n, len - (size_t)n, ";%s:%.9g", spec->loras[i].path, (double)spec->loras[i].scale);
}

sd_status sd_file_content_hash(const char *path, char out[17], sd_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sd_fail(err, SD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sd_fail(err, SD_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    uint64_t h = sd_hash_bytes("", 0);
    if (sb.st_size > 0) {
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return sd_fail(err, SD_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        h = sd_hash_bytes(map, (size_t)sb.st_size);
        munmap(map, (size_t)sb.st_size);
    }
    close(fd);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    return SD_OK;
}

/* --vae as a component: an AutoencoderKL folder, or a single file whose
 * config is the model's own VAE config */
sd_status sd_vae_swap_component(sd_component *v, const sd_model_folder *m, const char *path, sd_error *err)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "vae");
    snprintf(v->library, sizeof v->library, "diffusers");
    snprintf(v->class_name, sizeof v->class_name, "AutoencoderKL");
    v->kind = SD_COMPONENT_KIND_WEIGHTS;
    v->present = 1;
    if (sd_path_is_dir(path)) {
        v->dir = strdup(path);
        if (!v->dir)
            return sd_fail(err, SD_ERR_NOMEM, "out of memory");
        sd_json_doc cfg;
        sd_status st = sd_component_config(v, &cfg, err);
        if (st != SD_OK) {
            sd_vae_swap_free(v);
            return sd_error_prefix(err, st, "--vae: ");
        }
        sd_json_free(&cfg);
        return SD_OK;
    }
    if (!sd_path_exists(path))
        return sd_fail(err, SD_ERR_MISSING, "--vae %s: no such folder or file", path);
    const sd_component *own;
    sd_status st = sd_model_require(m, "vae", &own, err);
    if (st != SD_OK)
        return sd_error_prefix(err, st, "--vae %s: a single-file VAE takes its config from the model, and ", path);
    v->dir = own->dir ? strdup(own->dir) : NULL;
    v->config_text = own->config_text;
    v->single_file = strdup(path);
    v->vae_file = 1;
    if (!v->single_file || (own->dir && !v->dir)) {
        sd_vae_swap_free(v);
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    }
    return SD_OK;
}

void sd_vae_swap_free(sd_component *v)
{
    free(v->dir);
    free(v->single_file);
    memset(v, 0, sizeof *v);
}

static sd_status one_identity(const char *path, const char *config, const char *vae, const sd_model_spec *spec,
                              char *out, size_t len, sd_error *err)
{
    sd_model_folder m;
    SD_TRY(sd_model_open_path(&m, path, config, err));
    sd_status st = sd_model_identity_of(&m, spec->variant, out, len, err);
    if (st == SD_OK && vae) {
        sd_component v;
        st = sd_vae_swap_component(&v, &m, vae, err);
        if (st == SD_OK) {
            st = sd_identity_mix_component(out, len, &v, spec->variant, err);
            sd_vae_swap_free(&v);
        }
    }
    sd_model_close(&m);
    return st;
}

/* The content hash of each of spec's LoRA files, in order: read once per
 * load, for the identity and the notes both (a LoRA can be hundreds of MB). */
static sd_status lora_hashes(const sd_model_spec *spec, char hashes[][17], sd_error *err)
{
    for (int i = 0; i < spec->nloras; i++)
        SD_TRY(sd_file_content_hash(spec->loras[i].path, hashes[i], err));
    return SD_OK;
}

static sd_status identity_of(const sd_model_spec *spec, char hashes[][17], char *out, size_t len, sd_error *err)
{
    char base[40], rid[40] = "";
    SD_TRY(one_identity(spec->model, spec->model_config, spec->vae, spec, base, sizeof base, err));
    for (int i = 0; i < spec->nloras; i++) {
        char text[64];
        snprintf(text, sizeof text, "lora %s %.9g", hashes[i], (double)spec->loras[i].scale);
        sd_identity_mix_text(base, sizeof base, text);
    }
    if (spec->refiner) {
        sd_status st = one_identity(spec->refiner, spec->refiner_config, spec->vae, spec, rid, sizeof rid, err);
        if (st != SD_OK)
            return sd_error_prefix(err, st, "--refiner: ");
    }
    snprintf(out, len, "%s%s%s", base, rid[0] ? "+" : "", rid);
    return SD_OK;
}

sd_status sd_model_spec_identity(const sd_model_spec *spec, char *out, size_t len, sd_error *err)
{
    char hashes[SD_MAX_LORAS][17];
    SD_TRY(lora_hashes(spec, hashes, err));
    return identity_of(spec, hashes, out, len, err);
}

sd_status sd_model_spec_describe(const sd_model_spec *spec, char *identity, size_t identity_len, char *vae,
                                 size_t vae_len, char *loras, size_t loras_len, sd_error *err)
{
    char hashes[SD_MAX_LORAS][17];
    SD_TRY(lora_hashes(spec, hashes, err));
    SD_TRY(identity_of(spec, hashes, identity, identity_len, err));
    vae[0] = loras[0] = 0;
    if (spec->vae) {
        if (sd_path_is_dir(spec->vae)) {
            snprintf(vae, vae_len, "%s", sd_path_basename(spec->vae));
        } else {
            char h[17];
            SD_TRY(sd_file_content_hash(spec->vae, h, err));
            snprintf(vae, vae_len, "%s#%s", sd_path_basename(spec->vae), h);
        }
    }
    for (int i = 0; i < spec->nloras; i++) {
        size_t at = strlen(loras);
        snprintf(loras + at, loras_len - at, "%s%s#%s:%g", at ? "," : "", sd_path_basename(spec->loras[i].path),
                 hashes[i], (double)spec->loras[i].scale);
    }
    return SD_OK;
}
