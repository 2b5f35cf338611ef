/* clip_vocab.c - see clip_vocab.h. */
#include "worker/engine/text/clip_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"

extern const char sd_clip_vocab_json[], sd_clip_vocab_json_end[];
extern const char sd_clip_merges_txt[], sd_clip_merges_txt_end[];

static sd_status write_in(const char *dir, const char *name, const void *data, size_t len, sd_error *err)
{
    char *p = sd_path_join(dir, name);
    if (!p)
        return sd_fail(err, SD_ERR_NOMEM, "out of memory");
    sd_status st = sd_write_file_atomic(p, data, len, err);
    free(p);
    return st;
}

sd_status sd_clip_write_tokenizer(const char *dir, int pad_bang, sd_error *err)
{
    SD_TRY(sd_mkdirs(dir, err));
    SD_TRY(write_in(dir, "vocab.json", sd_clip_vocab_json, (size_t)(sd_clip_vocab_json_end - sd_clip_vocab_json),
                    err));
    SD_TRY(write_in(dir, "merges.txt", sd_clip_merges_txt, (size_t)(sd_clip_merges_txt_end - sd_clip_merges_txt),
                    err));
    const char *pad = pad_bang ? "\"!\"" : "\"<|endoftext|>\"";
    char special[1024], config[2048];
    snprintf(special, sizeof special,
             "{\n  \"bos_token\": {\"content\": \"<|startoftext|>\", \"lstrip\": false, \"normalized\": true, "
             "\"rstrip\": false, \"single_word\": false},\n"
             "  \"eos_token\": {\"content\": \"<|endoftext|>\", \"lstrip\": false, \"normalized\": true, "
             "\"rstrip\": false, \"single_word\": false},\n"
             "  \"pad_token\": %s,\n"
             "  \"unk_token\": {\"content\": \"<|endoftext|>\", \"lstrip\": false, \"normalized\": true, "
             "\"rstrip\": false, \"single_word\": false}\n}\n",
             pad);
    snprintf(config, sizeof config,
             "{\n  \"add_prefix_space\": false,\n  \"bos_token\": \"<|startoftext|>\",\n"
             "  \"clean_up_tokenization_spaces\": true,\n  \"do_lower_case\": true,\n"
             "  \"eos_token\": \"<|endoftext|>\",\n  \"errors\": \"replace\",\n  \"model_max_length\": 77,\n"
             "  \"pad_token\": %s,\n  \"tokenizer_class\": \"CLIPTokenizer\",\n  \"unk_token\": \"<|endoftext|>\"\n}\n",
             pad);
    SD_TRY(write_in(dir, "special_tokens_map.json", special, strlen(special), err));
    return write_in(dir, "tokenizer_config.json", config, strlen(config), err);
}
