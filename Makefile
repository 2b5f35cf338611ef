# sdxl - build. `make` builds every binary into $(BUILD)/bin; the CUDA side of
# kernels/ is compiled and linked whenever nvcc is found. Quiet by default,
# V=1 prints full commands. SANITIZE=1 builds into build-asan/ with
# AddressSanitizer + UBSan. Flags are recorded so a change of flags rebuilds.

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

CC ?= cc
OPT ?= -O2
CFLAGS_BASE := -std=c11 $(OPT) -g -fopenmp -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation -ffp-contract=off -D_GNU_SOURCE \
               -I. -MMD -MP -pthread $(SANFLAGS)
CFLAGS_BASE += $(shell pkg-config --cflags jansson libutf8proc 2>/dev/null)
# ---- optional features: one line each, found or not found ----
# OpenBLAS is only the peer of bench-gemm_cpu: the CPU backend's products
# are kernels/cpu/sgemm.c's, the same bits on any CPU (OpenBLAS' are not).
# Its OpenMP build shares our thread pool. BLAS=none (or none installed):
# the bench compares against our own sgemm.
OPENBLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS ?= $(if $(wildcard $(OPENBLAS_DIR)/libopenblas.so),openblas,none)
LIBS := -ljansson -lutf8proc -lpng -lwebp -ljpeg -lzmq -lmsgpackc -lsqlite3 -lz -lmicrohttpd -lsystemd
ifeq ($(BLAS),none)
CFLAGS_BASE += -DSDXL_NO_BLAS=1
$(info sdxl: OpenBLAS: not used (BLAS=none or not found): bench-gemm_cpu has no peer)
else
CFLAGS_BASE += -I/usr/include/x86_64-linux-gnu/openblas-openmp
LIBS += -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas
$(info sdxl: OpenBLAS: found at $(OPENBLAS_DIR) (the peer of bench-gemm_cpu))
endif
LIBS += -lm -lpthread

NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifneq ($(NVCC),)
HAVE_CUDA := 1
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS := -O3 -std=c++17 $(CUDA_ARCH) -I. -Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings \
             -lineinfo --expt-relaxed-constexpr
CFLAGS_BASE += -DSDXL_HAVE_CUDA=1 -I$(CUDA_HOME)/include
LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lstdc++
$(info sdxl: nvcc: found at $(NVCC): CUDA backend built)
$(if $(wildcard $(CUDA_HOME)/lib64/libcublasLt.so),$(info sdxl: cuBLASLt: found in $(CUDA_HOME)/lib64),$(error sdxl: cuBLASLt: not found in $(CUDA_HOME)/lib64 (the CUDA backend needs it)))
# NCCL is opened at run time (worker/daemon/cfg_pair_nccl.c); its header is
# needed to build the CFG pair's NCCL transport
NCCL_H := $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h))
ifneq ($(NCCL_H),)
CFLAGS_BASE += -DSDXL_HAVE_NCCL=1
$(info sdxl: NCCL: found ($(NCCL_H)): cfg pairs exchange over NCCL)
else
$(info sdxl: NCCL: not found: cfg pairs exchange over ZeroMQ)
endif
else
HAVE_CUDA := 0
$(info sdxl: nvcc: not found: CPU backend only)
$(info sdxl: cuBLASLt: not used (no nvcc))
$(info sdxl: NCCL: not used (no nvcc): cfg pairs exchange over ZeroMQ)
endif

CFLAGS := $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS) -pthread -fopenmp

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---- layers (DESIGN.md, Layout): one static library each; a binary links
# only the layers it may use, lowest last, so a call that runs the wrong way
# does not link, and tests/check_layers.sh fails the build on an include or
# an undefined symbol that runs against the direction below. ----
#   common      needs nothing of ours
#   kernels     common                      (the compute backend)
#   proto       common                      (the wire)
#   engine      kernels common              (worker/engine: the model engine)
#   daemon      engine proto kernels common (worker/daemon: sdxl-worker)
#   service     proto common                (coordinator/: sdxl-coordinator)
#   cli         common                      (coordinator/cli: what every command shares)
#   client      cli proto common            (coordinator/cli/client: commands of a coordinator)
#   local       cli engine kernels common   (coordinator/cli/engine: in-process commands)
LAYERS := common kernels proto engine daemon service cli client local
MAINS := coordinator/cli/main_sdxl.c coordinator/cli/engine/main_engine.c coordinator/main_coordinator.c \
         worker/daemon/main_worker.c
SRC_common := $(wildcard common/*.c common/*.S)
SRC_kernels := $(wildcard kernels/*.c kernels/cpu/*.c) $(if $(filter 1,$(HAVE_CUDA)),$(wildcard kernels/cuda/*.cu))
SRC_proto := $(wildcard proto/*.c)
SRC_engine := $(wildcard worker/engine/*/*.c worker/engine/*/*.S)
SRC_daemon := $(filter-out $(MAINS),$(wildcard worker/daemon/*.c))
SRC_service := $(filter-out $(MAINS),$(wildcard coordinator/*.c))
SRC_cli := $(filter-out $(MAINS),$(wildcard coordinator/cli/*.c))
SRC_client := $(filter-out $(MAINS),$(wildcard coordinator/cli/client/*.c))
SRC_local := $(filter-out $(MAINS),$(wildcard coordinator/cli/engine/*.c))
# the folder of each layer (DIR/*: the tree below it), for the include check
DIR_common := common/
DIR_kernels := kernels/*
DIR_proto := proto/
DIR_engine := worker/engine/*
DIR_daemon := worker/daemon/
DIR_service := coordinator/
DIR_cli := coordinator/cli/
DIR_client := coordinator/cli/client/
DIR_local := coordinator/cli/engine/
DEPS_common :=
DEPS_kernels := common
DEPS_proto := common
DEPS_engine := kernels common
DEPS_daemon := engine proto kernels common
DEPS_service := proto common
DEPS_cli := common
DEPS_client := cli proto common
DEPS_local := cli engine kernels common
obj_of = $(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(patsubst %.S,$(BUILD)/obj/%.S.o,$(patsubst %.c,$(BUILD)/obj/%.o,$(1))))
lib_of = $(foreach l,$(1),$(BUILD)/lib/libsdxl_$(l).a)
define layer_rule
$(call lib_of,$(1)): $(call obj_of,$(SRC_$(1)))
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  AR    $$@")
	$$(Q)rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach l,$(LAYERS),$(eval $(call layer_rule,$(l))))
ALL_LIBS := $(call lib_of,$(LAYERS))
# every layer, each before those it needs (for the tests, which reach all)
LINK_ORDER := local client cli daemon service engine proto kernels common

# The layering check: every library's includes, and the symbols it needs
# from our other libraries, against DEPS_*; a binary is linked only after it
# passed. A binary links its layer and that layer's DEPS_ (lowest last).
empty :=
space := $(empty) $(empty)
LAYER_SPEC := $(foreach l,$(LAYERS),'$(l):$(DIR_$(l)):$(subst $(space),+,$(strip $(DEPS_$(l))))')
$(BUILD)/layers.ok: $(ALL_LIBS) tests/check_layers.sh
	@$(if $(Q),echo "  CHECK layering")
	$(Q)tests/check_layers.sh $(BUILD)/lib $(LAYER_SPEC) && touch $@

# ---- binaries: one link rule; NAME_MAIN and NAME_LAYERS say what each is ----
# The libraries a layer set needs from the system (--as-needed drops what the
# objects pulled from the archives do not use: the client links no OpenBLAS
# or CUDA).
SYS_LIBS := -Wl,--as-needed $(LIBS)
sdxl_MAIN := coordinator/cli/main_sdxl.c
sdxl_LAYERS := client $(DEPS_client)
sdxl-engine_MAIN := coordinator/cli/engine/main_engine.c
sdxl-engine_LAYERS := local $(DEPS_local)
sdxl-coordinator_MAIN := coordinator/main_coordinator.c
sdxl-coordinator_LAYERS := service $(DEPS_service)
sdxl-worker_MAIN := worker/daemon/main_worker.c
sdxl-worker_LAYERS := daemon $(DEPS_daemon)
sdxl-tests_MAIN := $(wildcard tests/test_util.c tests/unit/*.c tests/golden/*.c tests/ops/*.c)
sdxl-tests_LAYERS := $(LINK_ORDER)
sdxl-tests_EXTRA := -lcriterion
sdxl-gpucheck_MAIN := $(wildcard tests/gpu/*.c tests/ops/*.c)
sdxl-gpucheck_LAYERS := $(LINK_ORDER)
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_NAMES := $(BENCH_SRC:tests/bench/%.c=bench-%)
$(foreach b,$(BENCH_NAMES),$(eval $(b)_MAIN := tests/bench/$(b:bench-%=%).c)$(eval $(b)_LAYERS := engine $(DEPS_engine)))
define link_rule
$(BUILD)/bin/$(1): $(call obj_of,$($(1)_MAIN)) $(call lib_of,$($(1)_LAYERS)) $(BUILD)/layers.ok
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  LD    $$@")
	$$(Q)$$(CC) $$(LDFLAGS) $$(filter-out %.ok,$$^) $$(SYS_LIBS) $$($(1)_EXTRA) -o $$@
endef
BIN_NAMES := sdxl sdxl-engine sdxl-coordinator sdxl-worker sdxl-tests $(BENCH_NAMES) $(if $(filter 1,$(HAVE_CUDA)),sdxl-gpucheck)
$(foreach b,$(BIN_NAMES),$(eval $(call link_rule,$(b))))

BINS := $(BUILD)/bin/sdxl $(BUILD)/bin/sdxl-engine $(BUILD)/bin/sdxl-coordinator $(BUILD)/bin/sdxl-worker
TEST_BIN := $(BUILD)/bin/sdxl-tests
BENCH_BINS := $(BENCH_NAMES:%=$(BUILD)/bin/%)
GPUCHECK := $(if $(filter 1,$(HAVE_CUDA)),$(BUILD)/bin/sdxl-gpucheck)

# The project's own small default model (random weights, the tiny preset,
# the embedded CLIP vocabulary): what the main job uses when no model is
# given, so a fresh clone generates without ../shared.
DEFAULT_MODEL := $(BUILD)/models/sdxl-tiny-random

.PHONY: all test fuzz bench run clean gpu-tools default-model chaos
all: $(BINS) $(GPUCHECK) $(DEFAULT_MODEL)/model_index.json

default-model: $(DEFAULT_MODEL)/model_index.json
$(DEFAULT_MODEL)/model_index.json: $(BUILD)/bin/sdxl $(BUILD)/bin/sdxl-engine
	@$(if $(Q),echo "  MODEL $(DEFAULT_MODEL)")
	$(Q)rm -rf $(DEFAULT_MODEL) && $(BUILD)/bin/sdxl random-model --preset tiny --out $(DEFAULT_MODEL) --dtype f32 --seed 0 2>/dev/null

# the GPU machine's checks and timings (tests/gpu/run.sh runs them)
gpu-tools: $(BINS) $(GPUCHECK)

$(BUILD)/flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CFLAGS) $(LIBS) $(NVCCFLAGS)' | cmp -s - $@ || echo '$(CFLAGS) $(LIBS) $(NVCCFLAGS)' > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# the deterministic GEMM's inner loops are not instrumented (as OpenBLAS never
# was): under ASan they would cost the suite minutes (kernels/cpu/sgemm.c)
$(BUILD)/obj/kernels/cpu/sgemm.o: CFLAGS := $(filter-out -fsanitize=% -fno-sanitize-recover=%,$(CFLAGS))

# data blobs (.incbin) are rebuilt when the files they include change
$(BUILD)/obj/worker/engine/text/clip_vocab_blob.S.o: worker/engine/text/data/clip/vocab.json worker/engine/text/data/clip/merges.txt
$(BUILD)/obj/worker/engine/weights/presets_blob.S.o: $(wildcard worker/engine/weights/presets/*/*.json)
$(BUILD)/obj/common/builtin_configs.S.o: $(wildcard common/builtin/*/*.json)
$(BUILD)/obj/%.S.o: %.S $(BUILD)/flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS    $<")
	$(Q)$(CC) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu $(BUILD)/flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

# The whole suite: unit + golden tests (plain and under ASan+UBSan), a short
# fuzz run, the CLI checks; ends with one line "N passed, N failed".
test:
	$(Q)tests/run_suite.sh

# Builds the test binary of this configuration and the default model the CLI
# and cluster checks run on (used by tests/run_suite.sh; a fresh clone has no
# build/models yet).
tests-bin: $(BINS) $(TEST_BIN) $(BENCH_BINS) $(DEFAULT_MODEL)/model_index.json

# the fault campaign (tests/cluster/chaos): TRIALS faults against a local
# cluster, process and network faults (root: namespaces, nftables); NO_NET=1
# for the process faults alone
TRIALS ?= 200
chaos: $(BINS) $(DEFAULT_MODEL)/model_index.json
	$(Q)python3 tests/cluster/chaos/chaos.py --bin $(BUILD)/bin --model $(DEFAULT_MODEL) --trials $(TRIALS) \
	    --seed $${SEED:-1} $(if $(NO_NET),--no-net)

FUZZ_SECONDS ?= 60
fuzz:
	$(Q)tests/fuzz/run_fuzz.sh $(FUZZ_SECONDS)

bench: $(BENCH_BINS) $(BINS)
	$(Q)tests/bench/run_bench.sh

# The main job: generate an image (see deploy/main_job.sh).
run: $(BINS) $(DEFAULT_MODEL)/model_index.json
	$(Q)deploy/main_job.sh

clean:
	rm -rf build build-asan build-fuzz

FORCE:
.PHONY: FORCE tests-bin

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
