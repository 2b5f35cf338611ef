/* cmd_tokenize.c - `sdxl tokenize --model DIR [--which 1|2] TEXT...`:
 * one line per TEXT holding a JSON array of its max_length (77) ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/cli.h"
#include "common/fsutil.h"
#include "common/model_folder.h"
#include "worker/engine/text/clip_tokenizer.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: sdxl tokenize --model DIR [--which 1|2] TEXT...\n\n"
                 "Prints, for each TEXT, one line with a JSON array of its token ids, as\n"
                 "diffusers' SDXL pipeline tokenizes it (bos, tokens, eos, padding to 77).\n"
                 "  --model DIR   a diffusers folder (or a tokenizer folder itself)\n"
                 "  --which 1|2   tokenizer (default 1) or tokenizer_2; a refiner has only 2\n");
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL;
    int which = 1, first_text = -1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            model = argv[++i];
        } else if (!strcmp(argv[i], "--which") && i + 1 < argc) {
            const char *w = argv[++i];
            if (strcmp(w, "1") && strcmp(w, "2")) {
                cli_errorf("tokenize", "--which must be 1 or 2, not '%s'", w);
                return 2;
            }
            which = atoi(w);
        } else if (!strcmp(argv[i], "--")) {
            first_text = i + 1;
            break;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            cli_errorf("tokenize", "unknown option '%s'", argv[i]);
            usage(stderr);
            return 2;
        } else {
            first_text = i;
            break;
        }
    }
    if (!model || first_text < 0 || first_text >= argc) {
        usage(stderr);
        return 2;
    }
    /* a tokenizer folder directly, or the component of a model folder */
    char *dir = NULL;
    char *vocab = sd_path_join(model, "vocab.json");
    if (vocab && sd_path_exists(vocab)) {
        dir = strdup(model);
    } else {
        sd_model_folder m;
        sd_error err = {0};
        const sd_component *c;
        if (sd_model_open(&m, model, &err) != SD_OK ||
            sd_model_require(&m, which == 1 ? "tokenizer" : "tokenizer_2", &c, &err) != SD_OK) {
            cli_errorf("tokenize", "%s", err.msg);
            free(vocab);
            if (m.root)
                sd_model_close(&m);
            return 1;
        }
        dir = strdup(c->dir);
        sd_model_close(&m);
    }
    free(vocab);
    sd_clip_tokenizer *tok;
    sd_error err = {0};
    if (sd_clip_tokenizer_load(&tok, dir, &err) != SD_OK) {
        cli_errorf("tokenize", "%s", err.msg);
        free(dir);
        return 1;
    }
    free(dir);
    int rc = 0;
    int64_t ids[4096];
    for (int i = first_text; i < argc; i++) {
        if (sd_clip_tokenize(tok, argv[i], ids, NULL, &err) != SD_OK) {
            cli_errorf("tokenize", "argument %d: %s", i - first_text + 1, err.msg);
            rc = 1;
            continue;
        }
        putchar('[');
        for (int k = 0; k < sd_clip_tokenizer_max_length(tok); k++)
            printf(k ? ",%lld" : "%lld", (long long)ids[k]);
        puts("]");
    }
    sd_clip_tokenizer_free(tok);
    return rc;
}
