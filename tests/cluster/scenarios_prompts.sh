# scenarios_prompts.sh - the cluster scenarios about what prompts become,
# sourced by test_cluster.sh (its helpers: start_coordinator, start_worker,
# port, ok, bad, $M, $BIN, $ROOT).

# --long-prompts through the cluster: conditioning of 154 and 231 tokens
# (prompt and prompt_2 of different lengths, a negative shorter than the
# prompt) travels from the text worker to the UNet worker; each image equals
# `sdxl generate --long-prompts` with the same parameters, byte for byte
scenario_long_prompts() {
    local d=$ROOT/longprompts ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    local words
    words=$(python3 -c 'print(" ".join(["a red fox in the snow."] * 30))')
    cat >"$d/items.jsonl" <<EOF2
{"prompt": "$words (fox)1.3", "negative_prompt": "blurry", "seed": 4, "long_prompts": true}
{"prompt": "a (cat)0.6 on a mat", "prompt_2": "$words", "seed": 5, "long_prompts": true}
EOF2
    start_coordinator "$d" "$ep"
    start_worker "$d" "$ep" text t1
    start_worker "$d" "$ep" unet u1
    start_worker "$d" "$ep" final f1
    local job out
    job=$($BIN/sdxl submit "$d/items.jsonl" --out "$d/out" --steps 2 --layout files --coordinator "$ep" | awk '{print $NF}')
    if ! out=$(timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1); then
        bad "long prompts through the cluster complete" "$out"
        kill $COORD
        return
    fi
    local diff=""
    $BIN/sdxl generate --model "$M" --steps 2 --quiet --long-prompts --prompt "$words (fox)1.3" --negative-prompt blurry \
        --seed 4 --out "$d/ref0.png" >/dev/null || diff="$diff generate-0-failed"
    $BIN/sdxl generate --model "$M" --steps 2 --quiet --long-prompts --prompt "a (cat)0.6 on a mat" --prompt-2 "$words" \
        --seed 5 --out "$d/ref1.png" >/dev/null || diff="$diff generate-1-failed"
    cmp -s "$d/ref0.png" "$d/out/00000000.png" || diff="$diff 0"
    cmp -s "$d/ref1.png" "$d/out/00000001.png" || diff="$diff 1"
    if [ -z "$diff" ]; then
        ok "items with --long-prompts through the cluster equal sdxl generate --long-prompts, byte for byte"
    else bad "long prompts equal generate" "differ:$diff"; fi
    kill $COORD
}
