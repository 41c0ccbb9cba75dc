# core.mk: builds cloudd, cloudctl and the C unit tests from the C core (no Ruby).
# Run from the repository root: make -f ext/cloud/core.mk [all|test|clean]
# (the Ruby extension itself is built by extconf.rb; `rake compile` runs both)

CC      ?= cc
PKGS    := libvirt json-c libssh2
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

bin/cloudd: $(OBJDIR)/cloudd.o $(OBJDIR)/libcloudcore.a
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

bin/cloudctl: $(OBJDIR)/cloudctl.o $(OBJDIR)/libcloudcore.a
	@mkdir -p bin
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/test/%: test/c/%.c test/c/check.h $(OBJDIR)/libcloudcore.a
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

.PHONY: all test tests clean
