# core.mk: builds cloudd, cloudctl and the C unit tests from the C core (no Ruby).
# Run from the repository root: make -f ext/cloud/core.mk [all|test|clean|fuzz]
# (the Ruby extension itself is built by extconf.rb; `rake compile` runs both)

CC      ?= cc
PKGS    := libvirt json-c libssh2 libcrypto
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
           -Wno-missing-field-initializers -Iext/cloud $(shell pkg-config --cflags $(PKGS))
LDLIBS  += $(shell pkg-config --libs $(PKGS)) -lpthread -ldl

OBJDIR  := build/core
CORE    := $(sort $(wildcard ext/cloud/cl_*.c))
OBJS    := $(patsubst ext/cloud/%.c,$(OBJDIR)/%.o,$(CORE))
HDRS    := $(wildcard ext/cloud/*.h)
TESTS   := $(patsubst test/c/%.c,build/test/%,$(sort $(wildcard test/c/test_*.c)))

all: bin/cloudd bin/cloudctl

$(OBJDIR)/%.o: ext/cloud/%.c $(HDRS)
	@mkdir -p $(OBJDIR)
	$(CC) $(CFLAGS) -c -o $@ $<

$(OBJDIR)/libcloudcore.a: $(OBJS)
	rm -f $@
	ar rcs $@ $^

bin/cloudd: $(OBJDIR)/cloudd.o $(OBJDIR)/cloudd_ops.o $(OBJDIR)/cloudd_opts.o $(OBJDIR)/libcloudcore.a
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

bin/cloudctl: $(OBJDIR)/cloudctl.o $(OBJDIR)/libcloudcore.a
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/test/%: test/c/%.c $(wildcard test/c/*.h) $(OBJDIR)/libcloudcore.a
	@mkdir -p build/test
	$(CC) $(CFLAGS) -Itest/c -o $@ $< $(OBJDIR)/libcloudcore.a $(LDLIBS)

tests: $(TESTS)

# Runs every C unit test; the last line is "N passed, N failed".
test: $(TESTS)
	@pass=0; fail=0; for t in $(TESTS); do \
	  if ./$$t; then pass=$$((pass+1)); else fail=$$((fail+1)); echo "FAILED: $$t"; fi; \
	done; echo "c-unit: $$pass passed, $$fail failed"; test $$fail -eq 0

clean:
	rm -rf build/core build/test bin/cloudd bin/cloudctl

# Fuzzing cl_msg_decode with libFuzzer (clang): builds the target and a seed corpus (genuine
# messages and near misses) under build/fuzz, then runs for FUZZ_SECONDS; fails on a crash.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 20
FUZZ_PKGS    := json-c libcrypto
FUZZ_SRCS    := test/fuzz/fuzz_msg.c ext/cloud/cl_msg.c ext/cloud/cl_err.c
FUZZ_CFLAGS  := -g -O1 -std=gnu11 -D_GNU_SOURCE -Iext/cloud \
                $(shell pkg-config --cflags $(FUZZ_PKGS)) \
                -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIBS    := $(shell pkg-config --libs $(FUZZ_PKGS))

build/fuzz/fuzz_msg: $(FUZZ_SRCS) $(HDRS)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $(FUZZ_SRCS) $(FUZZ_LIBS)

build/fuzz/fuzz_msg_seeds: $(FUZZ_SRCS) $(HDRS)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DFUZZ_MSG_SEEDS -o $@ $(FUZZ_SRCS) $(FUZZ_LIBS)

build/fuzz/seeds/.stamp: build/fuzz/fuzz_msg_seeds
	rm -rf build/fuzz/seeds
	@mkdir -p build/fuzz/seeds
	./build/fuzz/fuzz_msg_seeds build/fuzz/seeds
	@touch $@

fuzz: build/fuzz/fuzz_msg build/fuzz/seeds/.stamp
	@mkdir -p build/fuzz/corpus
	./build/fuzz/fuzz_msg -max_total_time=$(FUZZ_SECONDS) -max_len=1400 -timeout=10 \
	  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	  build/fuzz/corpus build/fuzz/seeds

.PHONY: all test tests clean fuzz
