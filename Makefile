# lmpress build. `make` builds build/liblmpress.a and build/lmpress; `make test` runs the
# suite (unit tests, CLI tests, fuzz-corpus replay); see README.md for the other targets.
# New sources are picked up by wildcard: lib/*/*.c, formats/*.c, jobs/*.c, tools/*.c,
# tests/unit/test_*.c, tests/fuzz/fuzz_*.c.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
OPT     ?= -O2
H5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
H5_LIBS   := $(shell pkg-config --libs hdf5 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5)
CAIRO_CFLAGS := $(shell pkg-config --cflags cairo fontconfig 2>/dev/null || echo -I/usr/include/cairo)
CAIRO_LIBS   := $(shell pkg-config --libs cairo fontconfig 2>/dev/null || echo -lcairo -lfontconfig)
# OpenMPI (lib/core/dist.c): the same binary runs alone or under mpirun (docs/architecture.md)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null || mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null || mpicc --showme:link 2>/dev/null)
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -fopenmp -D_GNU_SOURCE -I. $(H5_CFLAGS) $(CAIRO_CFLAGS) $(MPI_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  += -fopenmp -lcjson -lpcre2-8 -lutf8proc -llapacke -lopenblas $(H5_LIBS) $(CAIRO_LIBS) $(MPI_LIBS) -lz -lm -lpthread
LDFLAGS += $(EXTRA_LDFLAGS)

LIB_SRC   := $(sort $(wildcard lib/*/*.c) $(wildcard formats/*.c) $(wildcard jobs/*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
BENCH_SRC := $(sort $(wildcard tests/bench/bench_*.c))
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
REPLAY_BIN:= $(FUZZ_SRC:tests/fuzz/fuzz_%.c=$(BUILD)/tests/replay_%)
DEPS_OK   := $(BUILD)/.deps-ok

.PHONY: all deps test check bench demo sanitize fuzz install clean
all: $(DEPS_OK) $(BUILD)/liblmpress.a $(BUILD)/lmpress

# Dependency step shared by every target: installs missing Debian packages as root,
# otherwise prints the exact command and stops.
deps $(DEPS_OK): scripts/deps.sh
	@sh scripts/deps.sh
	@mkdir -p $(BUILD) && touch $(DEPS_OK)

$(BUILD)/obj/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/liblmpress.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lmpress: $(TOOL_OBJ) $(BUILD)/liblmpress.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/liblmpress.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/liblmpress.a tests/unit/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -MMD -MP -o $@ $< $(BUILD)/liblmpress.a $(LDLIBS)

# Fuzz targets compiled with a main() that replays a corpus (runs inside make test).
$(BUILD)/tests/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(BUILD)/liblmpress.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(BUILD)/liblmpress.a $(LDLIBS)

test: all $(UNIT_BIN) $(REPLAY_BIN)
	@BUILD=$(BUILD) sh scripts/run_tests.sh

# Fast subset: unit tests only.
check: all $(UNIT_BIN)
	@BUILD=$(BUILD) LMP_QUICK=1 sh scripts/run_tests.sh unit

$(BUILD)/bench/%: tests/bench/%.c $(BUILD)/liblmpress.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/liblmpress.a $(LDLIBS)

bench: all $(BENCH_BIN)
	@BUILD=$(BUILD) sh tests/bench/run.sh

demo: all
	@BUILD=$(BUILD) TEXT=$(TEXT) sh scripts/demo.sh $(MODEL)

sanitize:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" test

# libFuzzer binaries (clang): build/fuzz/fuzz_<target>; run e.g.
#   build/fuzz/fuzz_gguf tests/fuzz/corpus/gguf -max_total_time=60
# `make fuzz` builds all of them, `make build/fuzz/fuzz_gguf` one.
FUZZ_CC ?= clang
# fuzz_logits_h5 runs under LSAN_OPTIONS=suppressions=tests/fuzz/lsan-hdf5.supp (a leak
# inside libhdf5 itself; see that file).
FUZZ_LIB_SRC := $(sort $(wildcard lib/core/*.c) $(wildcard lib/io/*.c) $(wildcard lib/infer/tokenizer*.c)) \
	lib/distill/logits_file.c
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
fuzz: $(FUZZ_BIN)
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_SRC) | $(DEPS_OK)
	@mkdir -p $(BUILD)/fuzz
	@echo "  FUZZ $*"
	$(FUZZ_CC) -std=c11 -O1 -g -D_GNU_SOURCE -I. $(H5_CFLAGS) $(MPI_CFLAGS) -fopenmp=libgomp \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_LIB_SRC) $(LDLIBS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/lmpress
	install -m 755 $(BUILD)/lmpress $(DESTDIR)$(PREFIX)/bin/lmpress
	install -m 644 $(BUILD)/liblmpress.a $(DESTDIR)$(PREFIX)/lib/liblmpress.a
	@for h in $(wildcard lib/*/*.h formats/*.h jobs/*.h); do \
	  case $$h in *_internal.h) continue;; esac; \
	  install -d $(DESTDIR)$(PREFIX)/include/lmpress/$$(dirname $$h); \
	  install -m 644 $$h $(DESTDIR)$(PREFIX)/include/lmpress/$$h; done

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(UNIT_BIN:=.d)
