# passerelle — build, test, run.
#
#   make run     install what is missing, build, start the server on ./data, 127.0.0.1:8420
#   make run-tls the same over wss://, with a self-signed certificate made in ./data/tls
#   make test    install what is missing, build, run every test (last line: N passed, N failed)
#   make asan    the test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench   benchmarks that print figures
#   make demo    the 2024 data set written into a server through the sync protocol, then its
#                yearly report (SCALE=N: N generated participants instead)
#   make clean
#
# Sources are found by folder, so a new file needs no Makefile change:
#   proto/*.c   → libpsl-proto.a    (codecs, shared by server and client-lib)
#   domain/*.c  → libpsl-domain.a   (event validation and projections, shared by both too)
#   server/*.c  → libpsl-server.a   (all but main.c) and bin/passerelled
#   tools/X.c   → bin/X             (linked with both libraries)
#   tools/demo/*.c → libpsl-demo.a  (demo data sets, a small HTTP client; tools, tests, benches)
#   tests/*.c   → bin/run-tests     (one runner, every area)
#   tests/support/*.c → libpsl-testsupport.a (a raw WebSocket client, server start-up helpers),
#                 linked into run-tests and the benchmarks
#   bench/X.c   → bin/X

CC ?= cc
B ?= build
PKGS := libuv lmdb msgpack libwebsockets libsodium cmocka openssl
DEB_PKGS := pkg-config libuv1-dev liblmdb-dev libmsgpack-dev libwebsockets-dev \
            libsodium-dev libcmocka-dev libssl-dev openssl

# Recursive (=) so that pkg-config runs after `deps` installed the packages.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT ?= -O2 -g
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(SAN) -Iproto -Idomain -Iserver \
             -Iclient-lib/include -Iclient-lib -Itests -Itools/demo $(PKG_CFLAGS) $(CFLAGS)
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
# tools/demo/*.c → libpsl-demo.a: the demo data sets (the 2024 report's, and --scale
# histories) and a small HTTP client; linked into the tools, the tests and the benchmarks.
DEMO_SRC := $(wildcard tools/demo/*.c)
DEMO_LIB := $(if $(DEMO_SRC),$(B)/lib/libpsl-demo.a)
LIBS := $(DEMO_LIB) $(LIBS)

SERVER_BIN := $(if $(wildcard server/main.c),$(B)/bin/passerelled)
TOOLS := $(patsubst tools/%.c,$(B)/bin/%,$(TOOLS_SRC))
BENCHES := $(patsubst bench/%.c,$(B)/bin/%,$(BENCH_SRC))
TEST_BIN := $(B)/bin/run-tests

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

DATA ?= data
LISTEN ?= 127.0.0.1:8420

.PHONY: all deps build test asan bench run run-tls clean
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

# crash-test is not a benchmark (it has its own target, make crash-test).
bench: build
	@for b in $(filter-out $(B)/bin/crash-test,$(BENCHES)); do echo "== $$b"; $$b || exit 1; done

run: build
	@mkdir -p $(DATA)
	@echo "passerelle: data in ./$(DATA), listening on ws://$(LISTEN)/sync"
	@echo "  the dashboard: http://$(LISTEN)/ (sign in with a token)"
	@echo "  a token:  $(B)/bin/passerelle-admin --data $(DATA) token create --role coordinator --name you --device laptop"
	@$(B)/bin/passerelled --data $(DATA) --listen $(LISTEN)

# wss:// for local use: a self-signed certificate (EC P-256, CN localhost, for localhost and
# 127.0.0.1, one year) is made in $(TLS_DIR) the first time, with the openssl command.
# Clients must be told to trust $(TLS_DIR)/cert.pem (or, in a lab, to skip verification).
TLS_DIR ?= $(DATA)/tls
run-tls: build
	@mkdir -p $(DATA)
	@if [ ! -f $(TLS_DIR)/cert.pem ] || [ ! -f $(TLS_DIR)/key.pem ]; then \
	  command -v openssl >/dev/null 2>&1 || { echo "run-tls: the openssl command is needed (apt-get install openssl)"; exit 1; }; \
	  mkdir -p $(TLS_DIR) && chmod 700 $(TLS_DIR) && \
	  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
	    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	    -keyout $(TLS_DIR)/key.pem -out $(TLS_DIR)/cert.pem >/dev/null 2>&1 && \
	  chmod 600 $(TLS_DIR)/key.pem && \
	  echo "run-tls: made a self-signed certificate, $(TLS_DIR)/cert.pem (local use only)"; \
	fi
	@echo "passerelle: data in ./$(DATA), listening on wss://$(LISTEN)/sync (trust $(TLS_DIR)/cert.pem)"
	@echo "  the dashboard: https://$(LISTEN)/ (sign in with a token)"
	@echo "  a token:  $(B)/bin/passerelle-admin --data $(DATA) token create --role coordinator --name you --device laptop"
	@$(B)/bin/passerelled --data $(DATA) --listen $(LISTEN) --tls-cert $(TLS_DIR)/cert.pem --tls-key $(TLS_DIR)/key.pem

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

$(B)/lib/libpsl-demo.a: $(call obj,$(DEMO_SRC))
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
	$(CC) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LDLIBS_ALL)

$(B)/bin/%: $(B)/obj/tools/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LDLIBS_ALL)

$(B)/bin/%: $(B)/obj/bench/%.o $(SUPPORT_LIB) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LDLIBS_ALL)

$(TEST_BIN): $(call obj,$(TEST_SRC)) $(SUPPORT_LIB) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LDLIBS_ALL)

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

# ---- The dashboard (server/www/): its files are embedded into passerelled as C arrays by
# server/www/gen-assets.sh (POSIX sh + od), compiled into libpsl-server.a; no npm, no build
# step beyond this, nothing fetched at run time.
WWW_FILES := $(sort $(wildcard server/www/*.html server/www/*.css server/www/*.js \
                               server/www/*.svg))
WWW_GEN := $(B)/gen/www_assets.c
WWW_OBJ := $(B)/obj/gen/www_assets.o

# The folder too: its time changes when a file is added or removed.
$(WWW_GEN): $(WWW_FILES) server/www/gen-assets.sh server/www
	@mkdir -p $(dir $@)
	sh server/www/gen-assets.sh $@ $(WWW_FILES)

$(WWW_OBJ): $(WWW_GEN) server/www.h server/server_int.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(SERVER_LIB): $(WWW_OBJ)

# ---- Browser tests (tests/browser/, run by tests/test-dashboard.c from `make test`): Debian's
# chromium, and playwright-core from the npm registry at the version package-lock.json pins
# (installed into tests/browser/node_modules only when missing, so repeat runs are quick).
.PHONY: browser-deps
deps: browser-deps

browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1 || \
	    ! command -v npm >/dev/null 2>&1; then \
	  echo "deps: installing chromium (and node, npm if missing) for the browser tests"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  NODE=; command -v node >/dev/null 2>&1 || NODE=nodejs; \
	  NPM=; command -v npm >/dev/null 2>&1 || NPM=npm; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium $$NODE $$NPM; \
	fi
	@if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then \
	  echo "deps: npm ci in tests/browser (playwright-core)"; \
	  cd tests/browser && npm ci --no-audit --no-fund --loglevel=error; \
	fi

# ---- Reliability (docs/RELIABILITY.md): fuzz targets and their corpus replay, the fault
# shims, the long crash run, valgrind.  tests/fuzz/fuzz-<t>.c are libFuzzer targets; built
# with tests/fuzz/replay.c as main() they replay tests/fuzz/corpus/<t>/ in `make test`.
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz-%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_REPLAY := $(patsubst %,$(B)/bin/fuzz-replay-%,$(FUZZ_TARGETS))

all: $(FUZZ_REPLAY)

$(B)/bin/fuzz-replay-%: $(B)/obj/tests/fuzz/fuzz-%.o $(B)/obj/tests/fuzz/replay.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LDLIBS_ALL)

# Fault injection: an LD_PRELOAD shim that fills the disk under one file on demand, and a
# driver that fails allocations one by one (tests/test-faults.c runs both).  The shim only
# forwards calls: built without sanitizers, whatever the build.
FAULT_SO := $(B)/lib/libpsl-faultfs.so
OOM_BIN := $(B)/bin/psl-oom

all: $(FAULT_SO) $(OOM_BIN)

$(FAULT_SO): tests/fault/faultfs.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl

$(OOM_BIN): $(B)/obj/tests/fault/oom.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ -Wl,--start-group $^ -Wl,--end-group $(LDLIBS_ALL) -ldl

# ---- bench-compare: passerelle side by side with Redis Streams and PostgreSQL, the same
# events, the same durability, one run (docs/BENCHMARKS.md says how).
#   make bench-deps     install redis-server and postgresql from Debian when missing
#   make bench-report   the whole comparison, each figure the median of BENCH_RUNS runs, log
#                       sizes up to BENCH_MAX_LOG; rewrites the tables of docs/BENCHMARKS.md
#   make bench          (above) also runs bench-compare's quick mode: 1 run, logs up to 10^5
# bench/cmp/*.c → libpsl-cmp.a, linked into bin/bench-compare only.
BENCH_RUNS ?= 3
BENCH_MAX_LOG ?= 10000000
BENCH_SECONDS ?= 2
CMP_SRC := $(wildcard bench/cmp/*.c)
CMP_LIB := $(B)/lib/libpsl-cmp.a

.PHONY: bench-deps bench-report

bench-deps:
	@if [ ! -x /usr/bin/redis-server ] || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
	  echo "bench-deps: installing redis-server postgresql"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server postgresql; \
	fi

bench: bench-deps

bench-report: build bench-deps
	$(B)/bin/bench-compare --runs $(BENCH_RUNS) --max-log $(BENCH_MAX_LOG) \
	  --seconds $(BENCH_SECONDS) --doc docs/BENCHMARKS.md --results $(B)/bench-results.tsv

$(CMP_LIB): $(call obj,$(CMP_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

# A group: domain/rebuild-log.c (the rebuild it measures) calls back into the server's log.
$(B)/bin/bench-compare: $(B)/obj/bench/bench-compare.o $(CMP_LIB) $(SUPPORT_LIB) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -o $@ $< $(CMP_LIB) $(SUPPORT_LIB) -Wl,--start-group $(LIBS) -Wl,--end-group \
	  $(LDLIBS_ALL)

# make fuzz: each libFuzzer target (clang, ASan + UBSan) for FUZZ_RUNS executions, new inputs
# in build-fuzz/corpus/<t>, then merged into the committed tests/fuzz/corpus/<t>
# (-set_cover_merge=1: the fewest inputs that add coverage).  Logs and crash artifacts in
# build-fuzz/logs/.  Needs clang and libclang-rt (installed here if missing, not by `make test`).
FUZZ_B := build-fuzz
FUZZ_RUNS ?= 10000000
FUZZ_MAX_LEN ?= 16384
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# make crash-test: kill -9 cycles; make valgrind: what runs under memcheck.
CRASH_CYCLES ?= 100
VALGRIND_AREAS ?= error/ proto/ log/ journal/ domain/ projection/ access/ crash/ faults/ netfaults/ fuzz/
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
            --show-leak-kinds=definite --track-origins=yes --suppressions=tests/valgrind.supp
REL_OUT := $(B)/reliability

.PHONY: fuzz fuzz-build crash-test valgrind reliability-report

$(B)/bin/fuzz-%: $(B)/obj/tests/fuzz/fuzz-%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) -fsanitize=fuzzer -o $@ $^ $(LDLIBS_ALL)

fuzz-build: deps
	@if ! command -v clang >/dev/null 2>&1 || ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' | \
	    clang -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then \
	  echo "fuzz: installing clang libclang-rt-14-dev"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clang libclang-rt-14-dev; \
	fi
	@$(MAKE) --no-print-directory B=$(FUZZ_B) CC=clang OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(patsubst %,$(FUZZ_B)/bin/fuzz-%,$(FUZZ_TARGETS))

fuzz: fuzz-build
	@mkdir -p $(FUZZ_B)/logs
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_B)/corpus/$$t tests/fuzz/corpus/$$t; \
	  echo "== fuzz-$$t: $(FUZZ_RUNS) executions (log: $(FUZZ_B)/logs/$$t.log)"; \
	  $(FUZZ_B)/bin/fuzz-$$t -runs=$(FUZZ_RUNS) -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_B)/logs/$$t- $(FUZZ_B)/corpus/$$t tests/fuzz/corpus/$$t \
	    > $(FUZZ_B)/logs/$$t.log 2>&1 || { tail -60 $(FUZZ_B)/logs/$$t.log; exit 1; }; \
	  $(FUZZ_B)/bin/fuzz-$$t -set_cover_merge=1 tests/fuzz/corpus/$$t $(FUZZ_B)/corpus/$$t \
	    > $(FUZZ_B)/logs/$$t.merge.log 2>&1 || { tail -20 $(FUZZ_B)/logs/$$t.merge.log; exit 1; }; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' $(FUZZ_B)/logs/$$t.log; \
	  echo "   corpus: $$(ls tests/fuzz/corpus/$$t | wc -l) inputs in tests/fuzz/corpus/$$t"; \
	done

crash-test: build
	@mkdir -p $(REL_OUT)
	@$(B)/bin/crash-test --cycles $(CRASH_CYCLES) --figures $(REL_OUT)/crash.txt

# make valgrind: the in-process areas, and the reliability areas with the servers they start
# (--trace-children: passerelled itself runs under memcheck), then the corpus replays.  Each
# process writes its own report to $(REL_OUT)/vg/<pid>.log (a server's stderr is its data
# log); any non-empty report fails the target.  psl-oom is left native: it brings its own
# allocator, which memcheck would replace.
valgrind: build
	@command -v valgrind >/dev/null 2>&1 || { SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get install -y -qq valgrind; }
	@rm -rf $(REL_OUT)/vg && mkdir -p $(REL_OUT)/vg
	@PSL_TEST_TIMEOUT=900 $(VALGRIND) --log-file=$(REL_OUT)/vg/%p.log --trace-children=yes \
	  --trace-children-skip='/bin/*,/usr/bin/*,*/psl-oom' $(TEST_BIN) $(VALGRIND_AREAS) \
	  > $(REL_OUT)/valgrind.txt 2>&1; rc=$$?; cat $(REL_OUT)/valgrind.txt; [ $$rc = 0 ]
	@for t in $(FUZZ_TARGETS); do \
	  $(VALGRIND) --log-file=$(REL_OUT)/vg/replay-$$t.log $(B)/bin/fuzz-replay-$$t \
	    tests/fuzz/corpus/$$t >> $(REL_OUT)/valgrind.txt 2>&1 || exit 1; \
	  echo "fuzz-replay-$$t: $$(tail -1 $(REL_OUT)/valgrind.txt)"; \
	done
	@bad=$$(find $(REL_OUT)/vg -name '*.log' -size +0 | wc -l); \
	if [ $$bad != 0 ]; then find $(REL_OUT)/vg -name '*.log' -size +0 -exec cat {} +; \
	  echo "valgrind: $$bad process(es) reported errors"; exit 1; fi; \
	echo "valgrind: no process reported an error" | tee -a $(REL_OUT)/valgrind.txt

# Rewrite the figures section of docs/RELIABILITY.md from the last runs' outputs.
reliability-report: build
	@mkdir -p $(REL_OUT)
	@$(TEST_BIN) crash/ faults/ netfaults/ fuzz/ > $(REL_OUT)/tests.txt 2>&1; tail -1 $(REL_OUT)/tests.txt
	@sh tests/reliability-report.sh docs/RELIABILITY.md $(REL_OUT) $(FUZZ_B)/logs tests/fuzz/corpus

# ---- make demo (docs/DEMO.md): write the 2024 data set into a server through the real sync
# protocol (passerelle-demo, on the client library), then print the yearly report the server
# computes and the activity report's figures beside it.  The server: the one answering on
# DEMO_LISTEN if any (its data folder found by its lock: ./$(DEMO_DATA), else ./$(DATA)),
# else a new one on ./$(DEMO_DATA), left running (its pid in $(DEMO_DATA)/passerelled.pid).
# Writing twice stores the data once.  SCALE=N writes N generated histories instead.
DEMO_DATA ?= data-demo
DEMO_LISTEN ?= $(LISTEN)
SCALE ?=

.PHONY: demo
demo: build
	@set -e; url=ws://$(DEMO_LISTEN); dir=; \
	if $(B)/bin/passerelle-demo --probe 0 --url $$url; then \
	  for d in $(DEMO_DATA) $(DATA); do \
	    if [ -e $$d/passerelled.lock ] && ! flock -n $$d/passerelled.lock true 2>/dev/null; then \
	      dir=$$d; break; fi; \
	  done; \
	  if [ -z "$$dir" ]; then \
	    echo "demo: a server answers on $(DEMO_LISTEN) but uses neither ./$(DEMO_DATA) nor" \
	         "./$(DATA): make demo DEMO_DATA=<its data folder>"; exit 1; fi; \
	  echo "demo: using the server on $(DEMO_LISTEN) (data in $$dir)"; \
	else \
	  dir=$(DEMO_DATA); mkdir -p $$dir; \
	  nohup $(B)/bin/passerelled --data $$dir --listen $(DEMO_LISTEN) >> $$dir.log 2>&1 & \
	  echo $$! > $$dir/passerelled.pid; \
	  if ! $(B)/bin/passerelle-demo --probe 30 --url $$url; then \
	    echo "demo: passerelled did not start; see $$dir.log"; exit 1; fi; \
	  echo "demo: started passerelled on $(DEMO_LISTEN) (data in $$dir, log $$dir.log," \
	       "stop it with: kill $$(cat $$dir/passerelled.pid))"; \
	fi; \
	token=$$($(B)/bin/passerelle-admin --data $$dir token create --role coordinator \
	         --name demo --device make-demo); \
	$(B)/bin/passerelle-demo --url $$url --token $$token $(if $(SCALE),--scale $(SCALE))
