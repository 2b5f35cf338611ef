#!/usr/bin/env bash
# The coordinator's status page (/ on --http) in a real browser: Debian's
# headless Chromium loads it against a local cluster that made a job, takes
# a screenshot, and its DOM after loading shows the job's done count and
# thumbnails the browser decoded (each img sets data-loaded on load).
# Ends with "status_page: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
NAME=status_page
. tests/script_util.sh
deploy/bootstrap.sh browser >/dev/null || { bad "bootstrap browser (chromium)"; finish; }
ROOT=$(mktemp -d /tmp/sdxl-page-XXXXXX)
stop_on_exit "$ROOT"
local_cluster "$ROOT" page
hp=$ch
printf 'a cat\na dog\na fox\n' >"$ROOT/prompts.txt"
job=$($BIN/sdxl submit "$ROOT/prompts.txt" --out "$ROOT/out" --layout files --steps 3 --coordinator "$ep" | awk '{print $NF}')
timeout 120 $BIN/sdxl wait "$job" --coordinator "$ep" >/dev/null 2>&1 || bad "the job"
sleep 1.5 # a render after the last result
browse() { timeout 60 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$ROOT/chrome" "$@" \
    "http://127.0.0.1:$hp/" 2>>"$ROOT/chromium.log"; }
browse --window-size=1200,900 --screenshot="$ROOT/page.png" >/dev/null
if [ "$(head -c 8 "$ROOT/page.png" 2>/dev/null | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] &&
    [ "$(stat -c %s "$ROOT/page.png")" -gt 10000 ]; then
    ok "headless Chromium takes a screenshot of the status page"
else bad "screenshot" "$(tail -5 "$ROOT/chromium.log")"; fi
dom=$(browse --dump-dom) # after the load event: the images are in
loaded=$(grep -o '<img[^>]*data-loaded="1"' <<<"$dom" | wc -l)
if grep -q "$job" <<<"$dom" && grep -q 'class="done">3<' <<<"$dom" && [ "$loaded" -ge 1 ]; then
    ok "the page shows the job with its 3 done images, and $loaded thumbnails the browser loaded"
else bad "the page's content" "loaded $loaded; $(grep -o 'class="done">[0-9]*\|<img[^>]*' <<<"$dom" | head)"; fi
if grep -q "page-unet" <<<"$dom" && grep -q "<h2>Stages</h2>" <<<"$dom"; then
    ok "and the stages and the workers by role"
else bad "stages and workers on the page"; fi
finish
