/* bench tokenizer - CLIP tokenizer throughput on one core, on typical
 * 20-word prompts built from a vocabulary of common prompt words, against
 * the goal of 20,000 prompts per second per core.
 * usage: bench-tokenizer [TOKENIZER_DIR] [--min RATE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "worker/engine/text/clip_tokenizer.h"

static const char *words[] = {
    "a", "photo", "of", "an", "astronaut", "riding", "horse", "on", "mars", "highly", "detailed", "portrait",
    "woman", "golden", "hour", "lighting", "bokeh", "85mm", "cinematic", "masterpiece", "best", "quality",
    "landscape", "mountains", "sunset", "river", "forest", "fog", "city", "night", "neon", "rain", "street",
    "cyberpunk", "painting", "oil", "canvas", "watercolor", "sketch", "dragon", "castle", "medieval", "knight",
    "armor", "glowing", "eyes", "cat", "dog", "sitting", "window", "sunlight", "vintage", "film", "grain",
    "kodak", "portra", "400", "ultra", "sharp", "focus", "8k", "hdr", "trending", "artstation", "octane",
    "render", "unreal", "engine", "volumetric", "light", "studio", "ceramic", "vase", "flowers", "table",
    "wooden", "kitchen", "morning", "coffee", "cup", "steam", "beach", "waves", "tropical", "island", "palm",
    "trees", "snow", "winter", "fox", "red", "blue", "green", "purple", "intricate", "ornate", "gold", "silver",
};

int main(int argc, char **argv)
{
    const char *dir = "../shared/testdata/sdxl-tiny/tokenizer";
    double min_rate = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--min") && i + 1 < argc)
            min_rate = atof(argv[++i]);
        else
            dir = argv[i];
    }
    sd_clip_tokenizer *t;
    sd_error err = {0};
    if (sd_clip_tokenizer_load(&t, dir, &err) != SD_OK) {
        fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
        return 1;
    }
    enum { NPROMPTS = 2000, WORDS = 20 };
    static char prompts[NPROMPTS][512];
    unsigned rng = 12345;
    size_t nwords = sizeof words / sizeof words[0];
    for (int p = 0; p < NPROMPTS; p++) {
        prompts[p][0] = '\0';
        for (int w = 0; w < WORDS; w++) {
            rng = rng * 1103515245u + 12345u;
            strcat(prompts[p], words[(rng >> 16) % nwords]);
            strcat(prompts[p], (rng >> 8) % 5 == 0 ? ", " : " ");
        }
    }
    int64_t ids[77];
    long long checksum = 0;
    /* warm the word cache as a long-running worker has it */
    for (int p = 0; p < NPROMPTS; p++)
        sd_clip_tokenize(t, prompts[p], ids, NULL, &err);
    double a = sd_now_s();
    int rounds = 20;
    for (int r = 0; r < rounds; r++)
        for (int p = 0; p < NPROMPTS; p++) {
            if (sd_clip_tokenize(t, prompts[p], ids, NULL, &err) != SD_OK) {
                fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
                return 1;
            }
            checksum += ids[5];
        }
    double secs = sd_now_s() - a;
    double rate = rounds * NPROMPTS / secs;
    printf("tokenizer: %.0f prompts/s on one core (20-word prompts, %d prompts x %d rounds, %.3f s; "
           "goal 20000: %.1fx) [checksum %lld]\n",
           rate, NPROMPTS, rounds, secs, rate / 20000.0, checksum);
    sd_clip_tokenizer_free(t);
    if (min_rate > 0 && rate < min_rate) {
        fprintf(stderr, "bench-tokenizer: %.0f prompts/s is under the required %.0f\n", rate, min_rate);
        return 1;
    }
    return 0;
}
