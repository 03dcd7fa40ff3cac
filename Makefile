# rlhf.c build. `make` builds the library, programs and tests; `make test` runs every test;
# `make DEBUG=1 test` does the same under AddressSanitizer + UndefinedBehaviorSanitizer
# (separate build folder); `make bench` runs the benchmarks.
CC      ?= gcc
ARCH    ?= -march=native
WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wformat=2
# -fno-math-errno: nothing reads errno after a math call, and with it sqrtf stays a call that
# blocks vectorisation (AdamW ran scalar). IEEE results are unchanged; no -ffast-math.
CFLAGS  := -std=gnu11 $(WARN) -g -fopenmp -fno-math-errno -Icommon $(ARCH)
# each object lists the headers it included (.d files), so a header change rebuilds its users only
DEPFLAGS = -MMD -MP
LDLIBS  := -lopenblas -lsqlite3 -lyaml -lpcre2-8 -lcjson -lutf8proc -lm
# rlhf serve's HTTP server (only the rlhf tool links it)
WEB_LDLIBS := -lmicrohttpd
ifeq ($(MPI),1)
  # data parallelism across processes: mpicc, and the -DRLHF_MPI half of common/dist.c
  CC      := mpicc
  BUILD   := build-mpi
  CFLAGS  += -O2 -DRLHF_MPI
else ifeq ($(DEBUG),1)
  BUILD   := build-debug
  CFLAGS  += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
else
  BUILD   := build
  CFLAGS  += -O2
endif
CFLAGS += $(EXTRA_CFLAGS)

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libcommon.a
# the demo's task family (data/demo/): linked into the rlhf tool and the tests that use it
DEMO_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(wildcard data/demo/*.c))
DEMO_LIB   := $(BUILD)/libdemo.a
# web/: the browser side of the tool (`rlhf serve`'s pages, `rlhf report`), linked into rlhf
WEB_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(wildcard web/*.c)) $(BUILD)/web/assets.o
RLHF_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(wildcard rlhf/*.c pipelines/*.c)) $(WEB_OBJ)
TEST_SRC   := $(wildcard tests/test_*.c)
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# fuzz targets, also built with a plain driver that replays their corpus in `make test`
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SRC   := $(filter-out tests/fuzz/fuzz_driver.c,$(FUZZ_SRC))
FUZZ_BIN   := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
BENCH_SRC  := $(wildcard bench/bench_*.c)
BENCH_BIN  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
# programs: every folder with a main.c builds one binary of its name (rlhf/ also links pipelines/)
PROG_BIN   := $(foreach d,rlhf sft reward ppo dpo,$(BUILD)/bin/$(d))

.PHONY: all test bench clean deps demo fuzz
# objects are kept (never removed as intermediates), so a second make builds nothing
.SECONDARY:
all: $(LIB) $(PROG_BIN) $(TEST_BIN) $(BENCH_BIN) $(FUZZ_BIN)

# include paths per folder: common/ sees only itself; each program its own folder besides
$(BUILD)/rlhf/%.o:      INC := -Irlhf -Ipipelines -Idata/demo -Iweb
$(BUILD)/web/%.o:       INC := -Iweb -Irlhf
$(BUILD)/pipelines/%.o: INC := -Ipipelines
$(BUILD)/data/demo/%.o: INC := -Idata/demo
$(BUILD)/reward/%.o:    INC := -Ireward
# ppo runs reward programs as `rlhf eval-policy --score` runs its (rlhf/extprog.c)
$(BUILD)/ppo/%.o:       INC := -Ippo -Irlhf
# dpo imports files as `reward import` does (reward/cmd.h, linked from reward/)
$(BUILD)/dpo/%.o:       INC := -Idpo -Ireward
$(BUILD)/tests/%.o:     INC := -Itests -Ipipelines -Idata/demo
$(BUILD)/tests/test_dpo.o: INC := -Itests -Idpo
$(BUILD)/tests/test_web.o: INC := -Itests -Iweb
$(BUILD)/tests/fuzz/%.o: INC := -Itests/fuzz -Ipipelines -Ireward
$(BUILD)/bench/%.o:     INC := -Ibench

$(BUILD)/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(INC) $(DEPFLAGS) -c $< -o $@

# web/static/* (script, style sheet) compiled into the rlhf binary as byte arrays
$(BUILD)/web/assets.c: web/embed.sh $(wildcard web/static/*)
	@mkdir -p $(dir $@)
	sh web/embed.sh $(sort $(wildcard web/static/*)) > $@.tmp && mv $@.tmp $@
$(BUILD)/web/assets.o: $(BUILD)/web/assets.c
	$(CC) $(CFLAGS) -Iweb -c $< -o $@

$(LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(DEMO_LIB): $(DEMO_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/tests/testlib.o $(DEMO_LIB) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(BUILD)/tests/fuzz/fuzz_driver.o $(BUILD)/pipelines/pipeline.o \
                 $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $(filter-out $(LIB),$^) $(LIB) -o $@ $(LDLIBS)

# the import fuzz target runs `reward import`'s own code
$(BUILD)/fuzz/fuzz_import: $(BUILD)/reward/import.o $(BUILD)/reward/text.o

# the losses of dpo, tested on their own (the object before the libraries it uses)
$(BUILD)/tests/test_dpo: $(BUILD)/tests/test_dpo.o $(BUILD)/tests/testlib.o $(BUILD)/dpo/loss.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# web/'s charts and views, tested on their own (not the server's objects)
$(BUILD)/tests/test_web: $(BUILD)/tests/test_web.o $(BUILD)/tests/testlib.o $(BUILD)/web/html.o \
                         $(BUILD)/web/svg.o $(patsubst %.c,$(BUILD)/%.o,$(wildcard web/views*.c)) \
                         $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# bench/benchlib.c: what the benchmarks share (peak memory, median, reading a file)
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/bench/benchlib.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# each program from its folder's objects (compiled with that folder's include path and -MMD)
prog_obj = $(patsubst %.c,$(BUILD)/%.o,$(wildcard $(1)/*.c))
$(BUILD)/bin/rlhf: $(RLHF_OBJ) $(DEMO_LIB) $(LIB)
$(BUILD)/bin/rlhf: LDLIBS += $(WEB_LDLIBS)
$(BUILD)/bin/sft: $(call prog_obj,sft) $(LIB)
$(BUILD)/bin/reward: $(call prog_obj,reward) $(LIB)
$(BUILD)/bin/ppo: $(call prog_obj,ppo) $(BUILD)/rlhf/extprog.o $(LIB)
$(BUILD)/bin/dpo: $(call prog_obj,dpo) $(BUILD)/reward/import.o $(BUILD)/reward/text.o $(LIB)
$(PROG_BIN):
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# Installs the Debian packages we build against when what they provide is missing (scripts/deps.sh;
# quickstart.sh is the one command for a fresh machine). Once per make: `make test` checks the
# test mode (a superset of build) and tells the make it starts not to check again (DEPS_DONE=1).
deps:
	@[ -n "$(DEPS_DONE)" ] || sh scripts/deps.sh build

# Tests need the reference tools too (python3-torch for the interop checks).
test:
	@sh scripts/deps.sh test
	@$(MAKE) --no-print-directory DEPS_DONE=1 all
	@sh tests/run_tests.sh $(BUILD)

bench: all
	@sh bench/run_bench.sh $(BUILD)

# libFuzzer (clang) on every parser of outside input, FUZZ_SECONDS each (tests/fuzz/run_fuzz.sh).
fuzz:
	@sh scripts/deps.sh fuzz
	@sh tests/fuzz/run_fuzz.sh

# The main job: see scripts/demo.sh.
demo: all
	@sh scripts/demo.sh $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

clean:
	rm -rf build build-debug build-mpi build-fuzz build-avx2 build-v3
