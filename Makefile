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
# OpenBLAS built on OpenMP: its threads and ours share one pool, so neither
# spins against the other on a 2-core machine (the pthread build lost 20-50%)
OPENBLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
CFLAGS_BASE += -I/usr/include/x86_64-linux-gnu/openblas-openmp
# BLAS=none: the portable sgemm (kernels/cpu/sgemm.c) instead of OpenBLAS
BLAS ?= openblas
ifeq ($(BLAS),none)
LIBS := -ljansson -lutf8proc -lpng -lwebp -ljpeg -lzmq -lmsgpackc -lsqlite3 -lm -lpthread
CFLAGS_BASE += -DSDXL_NO_BLAS=1
else
LIBS := -ljansson -lutf8proc -lpng -lwebp -ljpeg -lzmq -lmsgpackc -lsqlite3 -L$(OPENBLAS_DIR) -Wl,-rpath,$(OPENBLAS_DIR) -lopenblas -lm -lpthread
endif

# ---- CUDA detection (llm.c style: one line per feature) ----
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifneq ($(NVCC),)
HAVE_CUDA := 1
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS := -O3 -std=c++17 $(CUDA_ARCH) -I. -Xcompiler -Wall,-Wextra,-Werror -Werror all-warnings \
             -lineinfo --expt-relaxed-constexpr
CFLAGS_BASE += -DSDXL_HAVE_CUDA=1 -I$(CUDA_HOME)/include
LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -ldl -lrt -lstdc++
$(info sdxl: CUDA backend: found nvcc at $(NVCC))
else
HAVE_CUDA := 0
$(info sdxl: CUDA backend: nvcc not found, CPU backend only)
endif

CFLAGS := $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS) -pthread -fopenmp

ifeq ($(V),1)
Q :=
else
Q := @
endif

MAINS := coordinator/main_sdxl.c coordinator/main_coordinator.c worker/main_worker.c
LIB_SRC := $(filter-out $(MAINS),$(wildcard common/*.c kernels/*.c kernels/cpu/*.c worker/*.c proto/*.c coordinator/*.c))
CU_SRC := $(if $(filter 1,$(HAVE_CUDA)),$(wildcard kernels/cuda/*.cu))
ASM_SRC := $(wildcard worker/*.S)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(ASM_SRC:%.S=$(BUILD)/obj/%.S.o) $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o)
LIB := $(BUILD)/libsdxl.a

BINS := $(BUILD)/bin/sdxl $(BUILD)/bin/sdxl-coordinator $(BUILD)/bin/sdxl-worker

TEST_SRC := tests/test_util.c $(wildcard tests/unit/*.c tests/golden/*.c)
TEST_BIN := $(BUILD)/bin/sdxl-tests
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCH_BINS := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bin/bench-%)

GPU_SRC := $(wildcard tests/gpu/*.c)
GPUCHECK := $(if $(filter 1,$(HAVE_CUDA)),$(BUILD)/bin/sdxl-gpucheck)

# The project's own small default model (random weights, the tiny preset,
# the embedded CLIP vocabulary): what the main job uses when no model is
# given, so a fresh clone generates without ../shared.
DEFAULT_MODEL := $(BUILD)/models/sdxl-tiny-random

.PHONY: all test test-fast fuzz bench run clean gpu-tools default-model
all: $(BINS) $(GPUCHECK) $(DEFAULT_MODEL)/model_index.json

default-model: $(DEFAULT_MODEL)/model_index.json
$(DEFAULT_MODEL)/model_index.json: $(BUILD)/bin/sdxl
	@$(if $(Q),echo "  MODEL $(DEFAULT_MODEL)")
	$(Q)rm -rf $(DEFAULT_MODEL) && $(BUILD)/bin/sdxl random-model --preset tiny --out $(DEFAULT_MODEL) --dtype f32 --seed 0 2>/dev/null

# the GPU machine's checks and timings (tests/gpu/run.sh runs them)
gpu-tools: $(BINS) $(GPUCHECK)
$(BUILD)/bin/sdxl-gpucheck: $(GPU_SRC:%.c=$(BUILD)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CFLAGS) $(LIBS) $(NVCCFLAGS)' | cmp -s - $@ || echo '$(CFLAGS) $(LIBS) $(NVCCFLAGS)' > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# data blobs (.incbin) are rebuilt when the files they include change
$(BUILD)/obj/worker/clip_vocab_blob.S.o: worker/data/clip/vocab.json worker/data/clip/merges.txt
$(BUILD)/obj/%.S.o: %.S $(BUILD)/flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS    $<")
	$(Q)$(CC) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu $(BUILD)/flags
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC  $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@$(if $(Q),echo "  AR    $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/sdxl: $(BUILD)/obj/coordinator/main_sdxl.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/bin/sdxl-coordinator: $(BUILD)/obj/coordinator/main_coordinator.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/bin/sdxl-worker: $(BUILD)/obj/worker/main_worker.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

$(TEST_BIN): $(TEST_SRC:%.c=$(BUILD)/obj/%.o) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD    $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LIBS) -lcriterion -o $@

$(BUILD)/bin/bench-%: $(BUILD)/obj/tests/bench/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) $^ $(LIBS) -o $@

# The whole suite: unit + golden tests (plain and under ASan+UBSan), a short
# fuzz run, the CLI checks; ends with one line "N passed, N failed".
test:
	$(Q)tests/run_suite.sh

# Builds the test binary of this configuration and the default model the CLI
# and cluster checks run on (used by tests/run_suite.sh; a fresh clone has no
# build/models yet).
tests-bin: $(BINS) $(TEST_BIN) $(BENCH_BINS) $(DEFAULT_MODEL)/model_index.json

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
