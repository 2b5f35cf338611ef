# scenarios_models.sh - the cluster scenarios about which model a job runs
# on, sourced by test_cluster.sh (its helpers: start_coordinator,
# start_worker, start_stages, port, ok, bad, $M, $BIN, $ROOT).

# submit --model pins a job to workers of that model: a job for another model
# waits, untouched, while one for the served model completes
scenario_pinned_model() {
    local d=$ROOT/pinned ep="tcp://127.0.0.1:$(port)"
    mkdir -p "$d"
    printf 'a cat\na dog\n' >"$d/prompts.txt"
    start_coordinator "$d" "$ep"
    start_stages "$d" "$ep"
    local other served
    other=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/other" --steps 2 --coordinator "$ep" --layout files \
        --model "${SDXL_TESTDATA:-../shared/testdata}/sdxl-tiny" | awk '{print $NF}')
    served=$($BIN/sdxl submit "$d/prompts.txt" --out "$d/served" --steps 2 --coordinator "$ep" --layout files \
        --model "$M" | awk '{print $NF}')
    local out st
    out=$(timeout 60 $BIN/sdxl wait "$served" --coordinator "$ep" 2>&1)
    st=$($BIN/sdxl status "$other" --json --coordinator "$ep")
    if [ -f "$d/served/00000001.png" ] && python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["done"]==0 and j["pending"]==2, j' "$st" 2>/dev/null &&
        ! ls "$d/other"/*.png >/dev/null 2>&1; then
        ok "submit --model: a job of another model waits untouched while the served model's job completes"
    else bad "pinned model" "$out / $st"; fi
    kill $COORD
}

# Items with LoRAs and VAEs of their own (tests/golden/data/model_files):
# each image equals `sdxl generate` with the same --lora and --vae, byte for
# byte (metadata naming them included), whichever model the workers held
# before (--model-cache 2: the second kohya item is loaded again).
scenario_item_models() {
    local d=$ROOT/itemmodels ep="tcp://127.0.0.1:$(port)" mf=$PWD/tests/golden/data/model_files
    mkdir -p "$d"
    cat >"$d/items.jsonl" <<EOF2
{"prompt": "a cat", "seed": 1}
{"prompt": "a cat", "seed": 1, "loras": "$mf/lora_kohya.safetensors:0.5"}
{"prompt": "a dog", "seed": 2, "vae": "$mf/vae_original.safetensors"}
{"prompt": "a dog", "seed": 2, "loras": "$mf/lora_peft.safetensors,$mf/lora_kohya.safetensors:0.7", "vae": "$mf/vae_fp16fix_like"}
{"prompt": "a cat", "seed": 1, "loras": "$mf/lora_kohya.safetensors:0.5"}
EOF2
    start_coordinator "$d" "$ep"
    start_worker "$d" "$ep" text t1 --model-cache 2
    start_worker "$d" "$ep" unet u1 --model-cache 2
    start_worker "$d" "$ep" final f1 --model-cache 2
    local job out
    job=$($BIN/sdxl submit "$d/items.jsonl" --out "$d/out" --steps 3 --layout files --coordinator "$ep" | awk '{print $NF}')
    if ! out=$(timeout 180 $BIN/sdxl wait "$job" --coordinator "$ep" 2>&1); then bad "items with their own LoRAs and VAE complete" "$out"; kill $COORD; return; fi
    local i=0 line diff="" a
    mkdir -p "$d/ref"
    while IFS= read -r line; do
        python3 -c 'import json,sys; j=json.loads(sys.argv[1]); a=["--prompt", j["prompt"], "--seed", str(j["seed"])]
for l in j.get("loras", "").split(",") if j.get("loras") else []: a += ["--lora", l]
a += ["--vae", j["vae"]] if "vae" in j else []
sys.stdout.write("\0".join(a) + "\0")' "$line" >"$d/args"
        mapfile -d '' -t a <"$d/args"
        $BIN/sdxl generate --model "$M" --steps 3 --quiet "${a[@]}" --out "$d/ref/$i.png" >/dev/null ||
            diff="$diff generate-$i-failed"
        cmp -s "$d/ref/$i.png" "$d/out/$(printf %08d $i).png" || diff="$diff $i"
        i=$((i + 1))
    done <"$d/items.jsonl"
    if [ -z "$diff" ]; then
        ok "items naming their own LoRAs and VAE equal sdxl generate with those --lora/--vae, byte for byte"
    else bad "item models equal generate" "differ:$diff"; fi
    if cmp -s "$d/out/00000001.png" "$d/out/00000004.png" && ! cmp -s "$d/out/00000000.png" "$d/out/00000001.png" &&
        [ "$(grep -c 'loading the model an item asks for' "$d/worker-u1.log")" -ge 3 ]; then
        ok "workers load an item's model when it comes and drop the least recently used (cache of 2)"
    else bad "model cache" "$(grep -c 'loading the model' "$d/worker-u1.log") loads"; fi
    kill $COORD
}

