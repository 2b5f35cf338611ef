/* fuzz_json_config.c - libFuzzer target for model configs: the input is a
 * config.json (Python's spellings of non-finite numbers included) read as
 * the UNet's, the VAE's, both text encoders' and the scheduler's config.
 * Each must load or be refused with a reason; never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_text.h"
#include "common/json_config.h"
#include "worker/engine/schedulers/scheduler.h"
#include "worker/engine/text/clip_text.h"
#include "worker/engine/unet/unet.h"
#include "worker/engine/vae/vae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    json_error_t je;
    sd_json_doc d = {sd_json_loads_python(text, size, JSON_REJECT_DUPLICATES, &je), "fuzz/config.json"};
    free(text);
    if (!json_is_object(d.root)) {
        json_decref(d.root);
        return 0;
    }
    sd_error err;
    sd_unet_config u;
    memset(&u, 0, sizeof u);
    sd_unet_config_parse(&u, &d, &err);
    sd_vae_config v;
    memset(&v, 0, sizeof v);
    sd_vae_config_parse(&v, &d, &err);
    sd_clip_config c;
    memset(&c, 0, sizeof c);
    sd_clip_config_parse(&c, &d, "CLIPTextModelWithProjection", &err);
    sd_scheduler s;
    if (sd_scheduler_init(&s, &d, -1, 0.0f, &err) == SD_OK) {
        sd_scheduler_set_timesteps(&s, 1 + (int)(size % 60), &err);
        sd_scheduler_free(&s);
    }
    json_decref(d.root);
    return 0;
}
