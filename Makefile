# passerelle — build, test, run.
#
#   make run     install what is missing, build, start the server on ./data, 127.0.0.1:8420
#   make test    install what is missing, build, run every test (last line: N passed, N failed)
#   make asan    the test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench   benchmarks that print figures
#   make clean
#
# Sources are found by folder, so a new file needs no Makefile change:
#   proto/*.c   → libpsl-proto.a    (codecs, shared by server and client-lib)
#   domain/*.c  → libpsl-domain.a   (event validation and projections, shared by both too)
#   server/*.c  → libpsl-server.a   (all but main.c) and bin/passerelled
#   tools/X.c   → bin/X             (linked with both libraries)
#   tests/*.c   → bin/run-tests     (one runner, every area)
#   tests/support/*.c → libpsl-testsupport.a (a raw WebSocket client, server start-up helpers),
#                 linked into run-tests and the benchmarks
#   bench/X.c   → bin/X

CC ?= cc
B ?= build
PKGS := libuv lmdb msgpack libwebsockets libsodium cmocka
DEB_PKGS := pkg-config libuv1-dev liblmdb-dev libmsgpack-dev libwebsockets-dev \
            libsodium-dev libcmocka-dev

# Recursive (=) so that pkg-config runs after `deps` installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT ?= -O2 -g
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SAN) -Iproto -Idomain -Iserver \
             -Iclient-lib/include -Iclient-lib -Itests $(PKG_CFLAGS) $(CFLAGS)
LDLIBS_ALL = $(SAN) $(PKG_LIBS) -lpthread -lm $(LDLIBS)

PROTO_SRC := $(wildcard proto/*.c)
DOMAIN_SRC := $(wildcard domain/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
CLIENT_SRC := $(wildcard client-lib/*.c)
TOOLS_SRC := $(wildcard tools/*.c)
TEST_SRC := $(wildcard tests/*.c)
SUPPORT_SRC := $(wildcard tests/support/*.c)
BENCH_SRC := $(wildcard bench/*.c)

PROTO_LIB := $(B)/lib/libpsl-proto.a
DOMAIN_LIB := $(B)/lib/libpsl-domain.a
SERVER_LIB := $(B)/lib/libpsl-server.a
CLIENT_LIB := $(if $(CLIENT_SRC),$(B)/lib/libpasserelle.a)
LIBS := $(SERVER_LIB) $(CLIENT_LIB) $(DOMAIN_LIB) $(PROTO_LIB)
SUPPORT_LIB := $(B)/lib/libpsl-testsupport.a

SERVER_BIN := $(if $(wildcard server/main.c),$(B)/bin/passerelled)
TOOLS := $(patsubst tools/%.c,$(B)/bin/%,$(TOOLS_SRC))
BENCHES := $(patsubst bench/%.c,$(B)/bin/%,$(BENCH_SRC))
TEST_BIN := $(B)/bin/run-tests

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

DATA ?= data
LISTEN ?= 127.0.0.1:8420

.PHONY: all deps build test asan bench run clean
.DEFAULT_GOAL := all

all: $(LIBS) $(SERVER_BIN) $(TOOLS) $(TEST_BIN) $(BENCHES)

# Install with apt-get whatever pkg-config does not find (as root, or through sudo).
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists $(PKGS); then \
	  echo "deps: installing $(DEB_PKGS)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PKGS); \
	fi

# `build` runs in a sub-make so that pkg-config is read once deps are in place.
build: deps
	@$(MAKE) --no-print-directory all

test: build
	@$(TEST_BIN)

asan: deps
	@$(MAKE) --no-print-directory B=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/bin/run-tests

bench: build
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

run: build
	@mkdir -p $(DATA)
	@echo "passerelle: data in ./$(DATA), listening on ws://$(LISTEN)/sync"
	@echo "  a token:  $(B)/bin/passerelle-admin --data $(DATA) token create --role coordinator --name you --device laptop"
	@$(B)/bin/passerelled --data $(DATA) --listen $(LISTEN)

clean:
	rm -rf build build-asan

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(PROTO_LIB): $(call obj,$(PROTO_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(DOMAIN_LIB): $(call obj,$(DOMAIN_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(SERVER_LIB): $(call obj,$(SERVER_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(SUPPORT_LIB): $(call obj,$(SUPPORT_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(B)/lib/libpasserelle.a: $(call obj,$(CLIENT_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(B)/bin/passerelled: $(call obj,server/main.c) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS_ALL)

$(B)/bin/%: $(B)/obj/tools/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS_ALL)

$(B)/bin/%: $(B)/obj/bench/%.o $(SUPPORT_LIB) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS_ALL)

$(TEST_BIN): $(call obj,$(TEST_SRC)) $(SUPPORT_LIB) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $^ $(LDLIBS_ALL)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

# ---- libpasserelle.so: the client library as one shared object for apps (client-lib/ and
# what it links of domain/ and proto/; not domain/rebuild-log.c, which needs the server's
# log).  Built from position-independent objects of its own under $(B)/pic, so the other
# objects keep their flags.
CLIENT_SO := $(if $(CLIENT_SRC),$(B)/lib/libpasserelle.so)
CLIENT_SO_SRC := $(CLIENT_SRC) $(filter-out domain/rebuild-log.c,$(DOMAIN_SRC)) $(PROTO_SRC)
pic = $(patsubst %.c,$(B)/pic/%.o,$(1))

all: $(CLIENT_SO)

$(B)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC -MMD -MP -c $< -o $@

$(B)/lib/libpasserelle.so: $(call pic,$(CLIENT_SO_SRC))
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libpasserelle.so -o $@ $^ $(LDLIBS_ALL)

-include $(shell find $(B)/pic -name '*.d' 2>/dev/null)
