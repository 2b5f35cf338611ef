/* test_generate_cli.c - `sdxl generate` end to end through its flags against
 * diffusers' goldens: the micro-conditioning flags (WxH on the command line,
 * (h, w) in diffusers), guidance rescale, prompt_2 / negative prompt, and the
 * ensemble of experts with --refiner. Checks the saved final latents
 * (relative L2 < 1e-4, fp32) and the PNG's pixels (within 1 level of 255). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/fsutil.h"
#include "common/image_io.h"
#include "tests/test_util.h"

static const char *bin_dir(void)
{
    const char *b = getenv("SDXL_BIN_DIR");
    return b && *b ? b : "build/bin";
}

static void run_ok(const char *args)
{
    char *tiny = tu_data_path("sdxl-tiny");
    char cmd[4096], log[4096];
    snprintf(cmd, sizeof cmd, "%s/sdxl generate --model '%s' --quiet %s 2>&1", bin_dir(), tiny, args);
    free(tiny);
    FILE *p = popen(cmd, "r");
    size_t n = fread(log, 1, sizeof log - 1, p);
    log[n] = '\0';
    int rc = pclose(p);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "%s\n%s", cmd, log);
}

static void compare(const char *dir, const char *golden)
{
    sd_st_file *g = tu_golden(golden), *lat;
    char *lp = sd_path_join(dir, "lat.safetensors"), *ip = sd_path_join(dir, "img.png");
    sd_error err = {0};
    cr_assert_eq(sd_st_open(&lat, lp, &err), SD_OK, "%s", err.msg);
    const sd_st_tensor *f = tu_tensor(lat, "final", SD_DTYPE_F32);
    tu_expect_close_host(f->data, (size_t)sd_st_numel(f), g, "final_latents", 1e-4);
    uint8_t *rgb;
    int w, h;
    cr_assert_eq(sd_image_read(ip, &rgb, &w, &h, &err), SD_OK, "%s", err.msg);
    const sd_st_tensor *ref = tu_tensor(g, "image_uint8_nhwc", SD_DTYPE_U8);
    cr_assert_eq((size_t)w * h * 3, (size_t)sd_st_numel(ref));
    int worst = 0;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        int d = abs((int)rgb[i] - (int)((const uint8_t *)ref->data)[i]);
        worst = d > worst ? d : worst;
    }
    cr_assert_leq(worst, 1, "PNG differs from diffusers' image by %d levels", worst);
    free(rgb);
    sd_st_close(lat);
    sd_st_close(g);
    free(lp);
    free(ip);
}

Test(generate_cli, micro_conditioning_and_rescale_flags)
{
    char *dir = tu_tmpdir(), args[2048];
    snprintf(args, sizeof args,
             "--prompt 'studio photo of a ceramic vase' --seed 2 --steps 4 --guidance 6 --guidance-rescale 0.7 "
             "--width 64 --height 64 --original-size 96x128 --crop-top-left 8,16 --target-size 64x64 "
             "--out %s/img.png --save-latents %s/lat.safetensors",
             dir, dir);
    run_ok(args);
    compare(dir, "e2e_base_rescale_timeids.safetensors");
    tu_rmrf(dir);
    free(dir);
}

Test(generate_cli, prompt_2_and_negative_prompt_flags)
{
    char *dir = tu_tmpdir(), args[2048];
    snprintf(args, sizeof args,
             "--prompt 'A red fox in the snow, highly detailed!' --prompt-2 'winter forest, oil painting' "
             "--negative-prompt 'blurry, low quality' --seed 1 --steps 5 --guidance 7.5 --width 64 --height 64 "
             "--out %s/img.png --save-latents %s/lat.safetensors",
             dir, dir);
    run_ok(args);
    compare(dir, "e2e_base_negative_prompt2.safetensors");
    tu_rmrf(dir);
    free(dir);
}

Test(generate_cli, ensemble_of_experts_with_refiner)
{
    char *dir = tu_tmpdir(), *ref = tu_data_path("sdxl-tiny-refiner"), args[2048];
    snprintf(args, sizeof args,
             "--refiner '%s' --high-noise-frac 0.8 --prompt 'a majestic lion jumping from a big stone at night' "
             "--seed 3 --steps 10 --guidance 5 --width 64 --height 64 --out %s/img.png "
             "--save-latents %s/lat.safetensors",
             ref, dir, dir);
    run_ok(args);
    compare(dir, "e2e_ensemble_refiner_part.safetensors");
    free(ref);
    tu_rmrf(dir);
    free(dir);
}
