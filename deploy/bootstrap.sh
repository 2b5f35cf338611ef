#!/usr/bin/env bash
# Installs the Debian packages sdxl needs to build and test, when missing.
# Safe to run repeatedly: it only calls apt-get when something is absent.
# Run as root (or with sudo available) on Debian 12. Extra groups a test
# needs are named as arguments: `deploy/bootstrap.sh slurm` adds Slurm and
# munge (tests/deploy/test_slurm.sh), `k8s` and `container` what
# tests/deploy/test_k8s.sh and test_container.sh need.
set -euo pipefail
pkgs=(make gcc clang libclang-rt-14-dev pkg-config python3
      libjansson-dev libutf8proc-dev libopenblas-openmp-dev libcriterion-dev
      libpng-dev libwebp-dev libjpeg-dev libzmq3-dev libmsgpack-dev libsqlite3-dev
      iproute2 nftables time zlib1g-dev libmicrohttpd-dev curl
      libsystemd-dev systemd)
for extra in "$@"; do
    case $extra in
    slurm) pkgs+=(slurm-wlm munge) ;;
    k8s) pkgs+=(python3-venv) ;; # tests/deploy/test_k8s.sh: its validators come from PyPI into a venv
    container) pkgs+=(docker.io mmdebstrap) ;;
    prometheus) pkgs+=(prometheus) ;; # promtool and the server (tests/deploy/test_prometheus.sh)
    browser) pkgs+=(chromium) ;;      # headless, for the status page (tests/deploy/test_status_page.sh)
    *) echo "bootstrap: unknown group '$extra' (slurm, k8s, container, prometheus, browser)" >&2; exit 2 ;;
    esac
done
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "bootstrap: nvcc not found: building the CPU backend only" >&2
fi
