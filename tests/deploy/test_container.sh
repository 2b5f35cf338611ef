#!/usr/bin/env bash
# deploy/container: an image of the recipe's layout built here without a
# registry, and the main job run inside it with no network. The base is a
# Debian 12 system with deploy/container/runtime-packages.txt (mmdebstrap,
# kept in /var/tmp by the list's hash), imported into a Docker engine this
# test starts on its own socket and folders and stops by its PID; the
# binaries are a CPU build of this checkout (build-cpu/: the image carries no
# cuBLASLt). Ends with "container: N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
NAME=container
. tests/script_util.sh
deploy/bootstrap.sh container >/dev/null || { bad "bootstrap container (docker.io, mmdebstrap)"; finish; }
T=$(mktemp -d /tmp/sdxl-container-XXXXXX)
DOCKERD=""
cleanup() {
    if [ -n "$DOCKERD" ]; then
        kill "$DOCKERD" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$DOCKERD" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DOCKERD" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cleanup EXIT

# the CPU build of the four binaries (the main job's)
if make -j"$(nproc)" NVCC= BUILD=build-cpu build-cpu/bin/sdxl build-cpu/bin/sdxl-engine build-cpu/bin/sdxl-coordinator \
    build-cpu/bin/sdxl-worker >"$T/build.log" 2>&1 && [ -f build/models/sdxl-tiny-random/model_index.json ]; then
    ok "a CPU-only build of sdxl, sdxl-engine, sdxl-coordinator and sdxl-worker"
else bad "CPU build" "$(tail -20 "$T/build.log")"; finish; fi

# the base, made once per package list
hash=$(sha256sum deploy/container/runtime-packages.txt | cut -c1-16)
base=/var/tmp/sdxl-container-base-$hash.tar
(
    flock 9
    if [ ! -f "$base" ]; then
        pkgs=$(grep -v '^#' deploy/container/runtime-packages.txt | paste -sd, -)
        # (mmdebstrap writes a tar for a name ending in .tar; the host's own Debian sources)
        mmdebstrap --variant=minbase --include="$pkgs" bookworm "${base%.tar}.part.tar" \
            /etc/apt/sources.list.d/debian.sources >"$T/mmdebstrap.log" 2>&1 && mv "${base%.tar}.part.tar" "$base"
    fi
) 9>"$base.lock"
[ -f "$base" ] || { bad "the Debian base (mmdebstrap)" "$(tail -20 "$T/mmdebstrap.log" 2>&1)"; finish; }

# a Docker engine of this test's own
export DOCKER_HOST=unix://$T/docker.sock
dockerd --data-root "$T/docker" --exec-root "$T/exec" --host "$DOCKER_HOST" --pidfile "$T/docker.pid" \
    --bridge=none --iptables=false --ip6tables=false >"$T/dockerd.log" 2>&1 &
DOCKERD=$!
for _ in $(seq 100); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
if docker version >/dev/null 2>&1; then ok "dockerd started on its own socket"
else bad "dockerd did not start" "$(tail -20 "$T/dockerd.log")"; finish; fi

tag=sdxl-test-$$
mkdir -p "$T/ctx/build/bin" "$T/ctx/build/models" "$T/ctx/deploy"
cp build-cpu/bin/sdxl build-cpu/bin/sdxl-engine build-cpu/bin/sdxl-coordinator build-cpu/bin/sdxl-worker "$T/ctx/build/bin/"
cp -r build/models/sdxl-tiny-random "$T/ctx/build/models/"
cp deploy/main_job.sh "$T/ctx/deploy/"
if docker import "$base" "sdxl-base:$hash" >/dev/null 2>"$T/import.log" &&
    docker build -q -f deploy/container/Dockerfile.local --build-arg "BASE=sdxl-base:$hash" -t "$tag" "$T/ctx" \
        >"$T/docker-build.log" 2>&1; then
    ok "the image: Debian 12 base imported, the binaries and the default model in Dockerfile's layout"
else bad "docker import/build" "$(cat "$T/import.log" "$T/docker-build.log" | tail -20)"; finish; fi

mkdir -p "$T/out"
if docker run --rm --network=none -e STEPS=4 -v "$T/out:/opt/sdxl/out" "$tag" >"$T/run.log" 2>&1; then
    n_png=$(ls "$T/out/dataset"/*.png 2>/dev/null | wc -l)
    n_meta=$(wc -l <"$T/out/dataset/metadata.jsonl" 2>/dev/null)
    if [ "$n_png" = 8 ] && [ "$n_meta" = 8 ]; then
        ok "the main job inside it, --network=none: a dataset of 8 images and their metadata"
    else bad "the main job's dataset" "$n_png images, $n_meta metadata lines; $(tail -20 "$T/run.log")"; fi
else bad "docker run of the main job" "$(tail -30 "$T/run.log")"; fi
docker rmi -f "$tag" "sdxl-base:$hash" >/dev/null 2>&1
finish
