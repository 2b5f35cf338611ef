/* test_pipeline_cases_golden.c - whole pipelines against diffusers on
 * sdxl-tiny for settings the shared goldens do not draw
 * (tests/golden/data/pipeline, written by make_pipeline_goldens.py):
 * image-to-image with num_images_per_prompt and negative micro-conditioning
 * (its time ids are ordered unlike text-to-image's), and DPM++ SDE Karras
 * (its Brownian tree seeded with the seed) in a batch of two and from an
 * init image. Each item as our one-generator batch item (--batch N
 * --one-generator). Bounds: latents within relative L2 1e-4 and the image
 * within 1 level, as every pipeline golden (tu_expect_generated). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"

#define DATA "tests/golden/data/pipeline/"

static void run_case(const char *name)
{
    json_error_t je;
    json_t *all = json_load_file(DATA "cases.json", 0, &je);
    cr_assert(all, "%s", je.text);
    json_t *c = json_object_get(all, name);
    cr_assert(c, "case %s", name);
    sd_gen_params g;
    tu_params_from_case(&g, c);
    float *init = NULL;
    if (json_is_true(json_object_get(c, "img2img")))
        init = tu_load_image_f("tests/golden/data/model_files/init_image.png", &g.init_w, &g.init_h);
    g.init_image = init;
    int n = json_object_get(c, "num_images_per_prompt") ? (int)json_integer_value(json_object_get(c, "num_images_per_prompt")) : 1;
    char *tiny = tu_data_path("sdxl-tiny");
    sd_model_spec ms = {.model = tiny};
    for (int i = 0; i < n; i++) {
        g.batch_n = n > 1 ? n : 0;
        g.batch_i = i;
        char item[96];
        snprintf(item, sizeof item, "%s_%d", name, i);
        tu_expect_generated(&ms, &g, DATA "goldens.safetensors", item);
    }
    free(tiny);
    free(init);
    json_decref(all);
}

Test(pipeline_cases, img2img_batch_with_negative_micro_conditioning, .timeout = 300)
{
    run_case("img2img_batch_negative_micro");
}

Test(pipeline_cases, dpmpp_sde_karras_batch_of_two, .timeout = 300)
{
    run_case("dpmpp_sde_karras_batch");
}

Test(pipeline_cases, dpmpp_sde_karras_img2img, .timeout = 300)
{
    run_case("dpmpp_sde_img2img");
}
