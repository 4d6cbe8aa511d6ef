# progressive-servers: six HTTP servers, one endpoint, six concurrency models.
#
#   make                 build everything into build/
#   make test            unit + integration tests (Check + libcurl)
#   make test SAN=1      the same under AddressSanitizer + UBSan (build/asan)
#   make test-uring      05 and 06 on io_uring (--backend uring) through
#                        the integration tests that start them (test_stages,
#                        test_attack, test_select_epoll, test_coroutines:
#                        TEST_URING), STAGE_BACKEND=uring; .ci/run runs it
#                        (SAN=1 too). make test runs the loop's and the
#                        scheduler's own tests on both backends already
#   make test SAN=thread ThreadSanitizer over the threaded parts (build/tsan):
#                        only 03-threads and 06-coroutines (its worker pool)
#                        are built, and only the tests that drive threads run
#                        (test_coro, test_coroutines, test_fork_threads,
#                        test_stages, test_main_service, test_faults,
#                        test_trace, test_outbox, test_deliver), with
#                        STAGES=03-threads,06-coroutines
#   make test-shared-stack  06's endpoint tests (test_stages) with
#                        --stack shared, both switches, and setjmp on
#                        io_uring (SAN=1 too)
#   make valgrind        memcheck spot check: one stage (VG_STAGE, default
#                        03-threads) run under valgrind, fails on any error
#                        or definite leak (tests/valgrind.sh)
#   make run STAGE=4     run one stage in the foreground (Ctrl-C stops it)
#   make demo            the instructor demo (bench/demo.sh), stage by stage;
#                        its pictures (drawn by build/trace) in build/demo/,
#                        asyncio.html: the seed's FastAPI app beside 06
#   make bench           the benchmarks (bench/bench.sh): tables + CSV under
#                        bench/results; about 10 minutes, BENCH_QUICK=1 about 3
#   make scale           20,000 clients at once, one 1 s request each, against
#                        05 and 06 (two workers each): every one answered, and
#                        the bytes per client (the short form of make bench's
#                        100,000; SCALE_CLIENTS=N for another size)
#   make soak            5 minutes of mixed and hostile traffic against every
#                        stage and the main service, with two outages of it,
#                        then a crash-restart loop (kill -9, --outbox)
#                        (SOAK_SECONDS=60: a short form; see tests/soak/soak.c)
#   make test-crash      the kill -9 run in the middle of 200 async jobs, with
#                        and without --outbox, in every stage (make test
#                        runs it for 03 and 05; tests/test_deliver.c)
#   make mutants         every protection has a test that fails without it:
#                        each tests/mutants/*.patch is applied to a scratch
#                        copy (build/mutants/tree) and its named tests must
#                        fail (MUTANTS='glob' runs some; see tests/mutants/run.sh)
#   make examples        the lecture's small C programs (examples/) into
#                        build/examples/
#   make check-exercise EX=s2-onesleep  check one of LECTURE.md's exercises
#   make exercises-check every exercise's check fails on the tree, passes with
#                        its solution and fails with each of its known-wrong
#                        answers (tests/exercises/wrong/; minutes)
#                        (without EX: list them)
#   make grade STAGE=4   the lab driver: graded checks against a stage (2-6;
#                        DIR=folder grades a folder built like one), points
#                        per part, build/grade/04.json (docs/grading.md)
#   make grade-check     the grader proven: the references score full marks,
#                        tests/grade/wrong/*.patch what they deserve, the
#                        labs nothing until solved, then full marks
#   make lab STAGE=4     lab/04-select/: 04 with its model's core cut out
#                        for you to write (labs/*.lab: 2-6; it never writes
#                        over a lab folder, unless FORCE=1), then
#                        make grade STAGE=4 DIR=lab/04-select
#   make deps            install missing packages (Debian/Ubuntu; the one
#                        list is tools/deps.sh), and make bench's optional ones
#   make cross ARCH=arm64      every stage, tool, example and test for arm64
#                        into build/arm64/ (Debian's cross compiler and
#                        multiarch libraries, installed if missing)
#   make test-cross ARCH=arm64 those tests under qemu-user (tests/cross/run.sh
#                        names the few that qemu cannot run, and why)
#   make fresh-check     as root: README.md's quick start in a fresh minimal
#                        Debian (debootstrap, chroot; minutes and downloads;
#                        tests/fresh/check.sh)
#   make fuzz            libFuzzer targets (clang)
#   make clean

PKGS := libcjson libcurl check

# Cross builds (make cross ARCH=arm64): the same sources, built with
# Debian's cross compiler into build/ARCH/, the libraries' flags from
# pkg-config in ARCH's multiarch folder (tools/deps.sh --cross installs
# both). Only an ARCH given on the command line counts: an ARCH in the
# environment (kernel builds set one) leaves this a native build.
PKG_CONFIG := pkg-config
DEPS_ARGS  :=
ifeq ($(origin ARCH),command line)
  TRIPLET_arm64 := aarch64-linux-gnu
  TRIPLET := $(TRIPLET_$(ARCH))
  ifeq ($(TRIPLET),)
    $(error ARCH=$(ARCH): cross builds know ARCH=arm64)
  endif
  ifneq ($(SAN),)
    $(error SAN=$(SAN) with ARCH=$(ARCH): sanitizer builds are native only)
  endif
  CC         := $(TRIPLET)-gcc
  AR         := $(TRIPLET)-ar
  PKG_CONFIG := PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLET)/pkgconfig:/usr/share/pkgconfig pkg-config
  DEPS_ARGS  := --cross $(ARCH)
endif

# Native builds need Linux: 04-06, the tools and the tests stand on epoll
# (common/loop.c), and 01-03, which use no epoll, still use Linux's own
# calls (accept4, pipe2, prctl, clock_nanosleep). Elsewhere (macOS; or
# SYSTEM=Darwin) one line says so and points at the container, and nothing
# is built. HAVE_EPOLL (probed below;
# HAVE_EPOLL=no pretends) builds 01-03 alone without epoll: the build a
# port of 01-03 would get (tests/test_make_gate.c checks it).
CONTAINER_HINT := use the container: README.md, "macOS and Windows"
SYSTEM := $(shell uname -s)
ifeq ($(TRIPLET)$(filter clean help,$(MAKECMDGOALS)),)
  ifneq ($(SYSTEM),Linux)
    $(error make: on $(SYSTEM) nothing here builds natively: 04-06 need epoll, and 01-03 use Linux calls (accept4, pipe2, prctl, clock_nanosleep); $(CONTAINER_HINT))
  endif
endif

# Missing libraries are installed before anything is compiled, so a fresh
# machine needs nothing but make (tools/deps.sh says more); make test also
# needs git (the exercises' patches), curl and python3 (the documents'
# command blocks).
TEST_CMDS := $(if $(filter test check-exercise exercises-check,$(MAKECMDGOALS)),git curl python3)
ifeq ($(filter clean deps help fresh-check,$(MAKECMDGOALS)),)
  ifneq ($(shell for c in $(firstword $(CC)) $(TEST_CMDS); do command -v $$c >/dev/null || exit; done; $(PKG_CONFIG) --exists $(PKGS) 2>/dev/null && echo ok),ok)
    $(info make: compiler, libraries or test tools missing ($(CC), $(PKGS) $(TEST_CMDS)); running tools/deps.sh $(DEPS_ARGS))
    DEPS_RC := $(shell ./tools/deps.sh $(DEPS_ARGS) 1>&2; echo $$?)
    ifneq ($(DEPS_RC),0)
      $(error could not install the libraries; see the message above)
    endif
  endif
endif

SAN     ?=
ifneq ($(TRIPLET),)
  B        := build/$(ARCH)
  OPT      := -O2
  SANFLAGS :=
else ifeq ($(SAN),)
  B        := build
  OPT      := -O2
  SANFLAGS :=
else ifeq ($(SAN),thread)
  B        := build/tsan
  OPT      := -O1
  SANFLAGS := -fsanitize=thread
else
  B        := build/asan
  OPT      := -O1
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
              -fno-omit-frame-pointer
endif

PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs libcjson libcurl 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

# liburing, for the io_uring backend of common/loop (05 and 06 --backend
# uring): linked when pkg-config finds it (tools/deps.sh installs
# liburing-dev); without it, or with LIBURING=no, that backend is compiled
# out and --backend uring says so and runs on epoll.
LIBURING ?= $(shell $(PKG_CONFIG) --exists liburing 2>/dev/null && echo yes)
ifeq ($(LIBURING),yes)
  PKG_CFLAGS += $(shell $(PKG_CONFIG) --cflags liburing 2>/dev/null) -DHAVE_LIBURING
  PKG_LIBS   += $(shell $(PKG_CONFIG) --libs liburing 2>/dev/null)
endif

CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Werror \
           -Icommon $(PKG_CFLAGS) $(SANFLAGS) -MMD -MP $(EXTRA_CFLAGS)
# One frame larger than a page could step over the guard page below a
# coroutine's stack (06) unnoticed; with this the compiler probes every page
# of a large frame, so the guard catches it (test_coro checks). The guard
# is one page: GCC on arm64 assumes 64 KiB of guard and probes only that
# often unless told 4 KiB (2^12; x86-64's default already). Left out where
# the compiler does not know the flags.
CLASH_FLAGS := -fstack-clash-protection --param stack-clash-protection-guard-size=12
CFLAGS  += $(shell for f in "$(CLASH_FLAGS)" -fstack-clash-protection; do \
             $(CC) $$f -Werror -xc -c /dev/null -o /dev/null 2>/dev/null && \
             { echo $$f; break; }; done)
LDFLAGS := $(SANFLAGS) -pthread
LDLIBS  := $(PKG_LIBS) -lm

STAGE_DIRS := $(sort $(patsubst %/,%,$(wildcard 0[1-6]-*/)))
TOOL_DIRS  := $(sort $(patsubst %/,%,$(dir $(wildcard tools/*/*.c))))
TESTS   := $(sort $(basename $(notdir $(wildcard tests/test_*.c))))

COMMON_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(wildcard common/*.c))
HARNESS_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(filter-out tests/test_%.c,$(wildcard tests/*.c)))

STAGE_BINS := $(addprefix $(B)/,$(STAGE_DIRS))
TOOL_BINS  := $(addprefix $(B)/,$(notdir $(TOOL_DIRS)))
TEST_BINS  := $(addprefix $(B)/tests/,$(TESTS))

# Without epoll (see "Native builds need Linux" above): 01-03 and the
# common files but 05's loop; any goal beyond building them stops here.
ifndef HAVE_EPOLL
  HAVE_EPOLL := $(shell $(CC) -E -include sys/epoll.h -x c /dev/null >/dev/null 2>&1 && echo yes || echo no)
endif
ifeq ($(HAVE_EPOLL),no)
  STAGE_BINS := $(filter $(B)/01-% $(B)/02-% $(B)/03-%,$(STAGE_BINS))
  TOOL_BINS  :=
  COMMON_OBJ := $(filter-out $(B)/obj/common/loop%.o,$(COMMON_OBJ))
  ifneq ($(filter-out all run clean help deps,$(or $(MAKECMDGOALS),all)),)
    $(error make $(filter-out all run clean help deps,$(MAKECMDGOALS)): needs epoll, which this system lacks; $(CONTAINER_HINT))
  endif
  $(info make: no epoll here: building $(notdir $(STAGE_BINS)) only; 04-06, the tools and the tests need it: $(CONTAINER_HINT))
endif

.PHONY: all test test-shared-stack test-crash unit integration run demo bench scale deps fuzz clean help valgrind soak mutants examples check-exercise \
        exercises-check grade grade-workflow grade-check lab cross test-cross fresh-check
all: $(STAGE_BINS) $(TOOL_BINS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libcommon.a: $(COMMON_OBJ)
	$(AR) rcs $@ $^

# A stage is every .c file in its folder, linked with common/; so is a
# tool, its folder tools/NAME/ (build/NAME: loadgen, main-service, trace).
objs_of = $(patsubst %.c,$(B)/obj/%.o,$(wildcard $(1)/*.c))
.SECONDEXPANSION:
$(STAGE_BINS): $(B)/%: $$(call objs_of,$$*) $(B)/libcommon.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(TOOL_BINS): $(B)/%: $$(call objs_of,tools/$$*) $(B)/libcommon.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The lecture's small programs (examples/*.c, one file each): built by
# `make examples` and by make test, whose doc test runs them. They may use
# 06's scheduler (co_spawn, co_gather...), so they link its library files.
CORO_LIB_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(filter-out %/server.c,$(wildcard 06-coroutines/*.c)))
EXAMPLE_BINS := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))
examples: $(EXAMPLE_BINS)
$(EXAMPLE_BINS): $(B)/examples/%: $(B)/obj/examples/%.o $(CORO_LIB_OBJ) $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Test programs may need a stage's or a tool's own library files: test_coro
# links 06's scheduler (every .c file of 06-coroutines but its server.c),
# test_rawhttp loadgen's HTTP client, test_trace the trace tool but its main.
TEST_EXTRA_test_coro := $(CORO_LIB_OBJ)
TEST_EXTRA_test_rawhttp := $(B)/obj/tools/loadgen/rawhttp.o
TEST_EXTRA_test_trace := $(filter-out %/main.o,$(call objs_of,tools/trace))
# test_trace reads Chromium's screenshot, a PNG, with zlib where its
# headers are installed (.ci/run installs them); without, it compares the
# screenshot's size with a blank page's. It drives loadgen and the tool.
ifeq ($(shell $(PKG_CONFIG) --exists zlib 2>/dev/null && echo ok),ok)
  $(B)/obj/tests/test_trace.o: CFLAGS += -DHAVE_ZLIB
  $(B)/tests/test_trace: LDLIBS += -lz
endif
$(B)/tests/test_trace: | $(B)/loadgen $(B)/trace
# test_tiny starts the tiny versions of 04-06 (examples/tiny_*.c) and 01.
$(B)/tests/test_tiny: | $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/tiny_*.c)) $(B)/01-blocking
$(TEST_BINS): $(B)/tests/%: $(B)/obj/tests/%.o $$(TEST_EXTRA_$$*) $(HARNESS_OBJ) $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(CHECK_LIBS) -o $@

# Unit tests first (fast, pinpoint failures), then the stages end to end.
# STAGE_BIN_DIR tells the integration tests which build to start.
#
# ThreadSanitizer (SAN=thread) is about threads, and it makes programs 5-15
# times slower: it builds and runs only what has threads worth checking,
# 03-threads (a thread per connection, job threads, the live counters) and
# 06-coroutines (its run_in_executor worker pool, coroutine fibers), with the
# main service they call back. The tests that start stages honour STAGES.
ifeq ($(SAN),thread)
  TSAN_TESTS := test_coro test_coroutines test_fork_threads test_stages \
                test_main_service test_faults test_trace test_outbox \
                test_deliver
  TEST_RUN   := $(addprefix $(B)/tests/,$(filter $(TSAN_TESTS),$(TESTS)))
  TEST_NEEDS := $(addprefix $(B)/,03-threads 06-coroutines main-service)
  # TSan sleeps a second at exit when other threads still run (its
  # atexit_sleep_ms), and 03 may exit while a detached thread that has
  # given up is still returning: the tests time a stop's exit, not TSan's.
  TEST_ENV   := STAGES=03-threads,06-coroutines \
                TSAN_OPTIONS="atexit_sleep_ms=0 $(TSAN_OPTIONS)"
else
  TEST_RUN   := $(TEST_BINS)
  TEST_NEEDS := all examples
  TEST_ENV   :=
endif

# Test programs run TEST_JOBS at a time (tests/run_tests.sh: they mostly wait
# on servers' deadlines, so two at a time halve the wait on two cores); under
# ThreadSanitizer, whose programs are CPU-bound, one at a time, and so under
# qemu (make test-cross), where two at a time made the time bounds flaky.
ifneq ($(filter thread,$(SAN))$(TRIPLET),)
  TEST_JOBS ?= 1
else
  TEST_JOBS ?= 2
endif
test: $(TEST_NEEDS) $(TEST_RUN)
	@$(TEST_ENV) STAGE_BIN_DIR=$(B) ./tests/run_tests.sh $(TEST_JOBS) $(TEST_RUN) && \
	echo "make test: all passed ($(B))"

# 06's endpoint table (test_stages) again with one shared stack, under both
# switches, and on io_uring, whose loop moves a parked coroutine's bytes
# (make test runs test_coro and test_coroutines in every mode; this is the
# slower whole-endpoint pass, about 20 s, which .ci/run adds).
test-shared-stack: $(B)/06-coroutines $(B)/main-service $(B)/tests/test_stages
	@for way in "setjmp epoll" "swapcontext epoll" "setjmp uring"; do \
	    set -- $$way; \
	    echo "== test_stages, 06-coroutines --stack shared --switch $$1 --backend $$2"; \
	    STAGES=06-coroutines STAGE_BACKEND=$$2 \
	        HARNESS_STAGE_ARGS="--stack shared --switch $$1" \
	        STAGE_BIN_DIR=$(B) $(B)/tests/test_stages || exit 1; \
	done

# The same integration tests once more with 05 and 06 on io_uring: a
# target of its own, as their run takes about 35 s, more than make test's
# budget allows (make test keeps test_loop's and test_coro's io_uring rows
# and test_backends, the refusal and fallback, for that). Without io_uring
# (no liburing, a kernel that refuses it) the stages fall back to epoll
# and say so, and these run on epoll again.
TEST_URING ?= test_stages test_attack test_select_epoll test_coroutines test_trace
.PHONY: test-uring
test-uring: $(TEST_NEEDS) $(addprefix $(B)/tests/,$(TEST_URING))
	@STAGE_BACKEND=uring STAGES=05-epoll-callbacks,06-coroutines \
	    STAGE_BIN_DIR=$(B) ./tests/run_tests.sh $(TEST_JOBS) \
	    $(addprefix $(B)/tests/,$(TEST_URING)) && \
	echo "make test-uring: all passed ($(B))"

# Cross builds: every stage, tool, example and test program for ARCH into
# build/ARCH/ (make cross ARCH=arm64); make test-cross ARCH=arm64 runs the
# test programs under qemu-user (tests/cross/run.sh: how, and the few that
# qemu cannot run, each named with its reason).
ifneq ($(filter cross test-cross,$(MAKECMDGOALS)),)
  ifeq ($(TRIPLET),)
    $(error make $(filter cross test-cross,$(MAKECMDGOALS)) needs ARCH on its command line, e.g. make cross ARCH=arm64)
  endif
endif
ifneq ($(TRIPLET),)
  ifneq ($(filter test,$(MAKECMDGOALS)),)
    $(error build/$(ARCH)'s programs are $(ARCH)'s: run them with make test-cross ARCH=$(ARCH))
  endif
endif
cross: all examples $(TEST_BINS)
test-cross: cross
	@TEST_JOBS=$(TEST_JOBS) ./tests/cross/run.sh $(ARCH) $(B) $(TEST_BINS)

# README.md's quick start, run as written in a fresh minimal Debian
# (root only; minutes and downloads; never part of make test).
fresh-check:
	@./tests/fresh/check.sh

# valgrind's memcheck over one stage of the plain build (-O2 -g): the
# lecture example (sync, async with its callback, bad requests), SIGTERM,
# then any memcheck error or definite leak fails.
VG_STAGE ?= 03-threads
valgrind: $(B)/$(VG_STAGE) $(B)/main-service
	@./tests/valgrind.sh $(B) $(VG_STAGE)

# The soak (issue 12): minutes long, so not part of make test. Its driver
# lives in tests/soak/, out of the harness's tests/*.c, and reads the
# harness's stage table.
SOAK_OBJ := $(patsubst %.c,$(B)/obj/%.o,$(wildcard tests/soak/*.c))
$(B)/soak: $(SOAK_OBJ) $(HARNESS_OBJ) $(B)/libcommon.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(CHECK_LIBS) -o $@

soak: all $(B)/soak
	@SOAK_SAN=$(SAN) STAGE_BIN_DIR=$(B) $(B)/soak

# The kill -9 runs of tests/test_deliver.c for every stage; make test runs
# them for one stage of each family (03, 05) to stay within its time.
test-crash: all $(B)/tests/test_deliver
	@CRASH_STAGES=all CK_RUN_CASE="kill -9" STAGE_BIN_DIR=$(B) \
	    $(B)/tests/test_deliver

# Mutants (issue 19): a scratch copy of the tracked files with its own
# build/, so the tree being worked on is never patched.
mutants:
	@./tests/mutants/run.sh

# The lecture's exercises (tests/exercises/<id>.sh; solutions/<id>.patch,
# which make test's test_solutions applies): without EX, the list of ids.
check-exercise: all examples
	@./tests/exercises/run.sh $(B) $(EX)

# Every check against its solution and its known-wrong answers
# (tests/exercises/wrong/<id>--<slug>.patch, each a plausible mistake that
# must fail it); EX=<id> for one. Minutes, so not part of make test (whose
# test_solutions runs the solutions only); .ci/run calls it.
exercises-check: all examples
	@./tests/exercises/solutions.sh --wrong $(B) $(EX)

# make run and make grade: which stage.
STAGE ?= 1

# The lab driver (tests/grade/): graded checks against one stage's binary,
# a table of parts and points, $(B)/grade/0N.json. DIR grades a folder
# built like a stage instead (its .c files linked with common/), into a
# binary of its own; ONLY=check runs one check (exit 0 if it passed).
GRADE_OBJ  := $(patsubst %.c,$(B)/obj/%.o,$(wildcard tests/grade/*.c))
GRADE_NAME := $(filter 0$(STAGE)-%,$(STAGE_DIRS))
GRADE_SRC  := $(patsubst %/,%,$(DIR))
#
# A file of that folder named like one of common/'s replaces it (a lab's
# own copy of common/evconn.c: make lab): the folder is linked with an
# archive of common's objects without those, built beside its binary.
ifneq ($(GRADE_SRC),)
  GRADE_BIN_DIR := $(B)/grade/bin/$(subst /,_,$(GRADE_SRC))
  GRADE_OWN     := $(patsubst %.c,$(B)/obj/common/%.o,$(notdir $(wildcard $(GRADE_SRC)/*.c)))
  $(GRADE_BIN_DIR)/libcommon.a: $(filter-out $(GRADE_OWN),$(COMMON_OBJ))
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^
  $(GRADE_BIN_DIR)/$(GRADE_NAME): $(call objs_of,$(GRADE_SRC)) $(GRADE_BIN_DIR)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
else
  GRADE_BIN_DIR := $(B)
endif
$(B)/grade/grade: $(GRADE_OBJ) $(HARNESS_OBJ) $(B)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) $(CHECK_LIBS) -o $@

grade: $(B)/grade/grade $(GRADE_BIN_DIR)/$(GRADE_NAME) $(B)/main-service
	@$(B)/grade/grade --stage $(STAGE) --bin-dir $(GRADE_BIN_DIR) \
	    --tools-dir $(B) --json $(B)/grade/0$(STAGE).json $(if $(ONLY),--only $(ONLY))

# GitHub Classroom: a workflow with one command-grader step per check.
grade-workflow: $(B)/grade/grade
	@$(B)/grade/grade --stage $(STAGE) \
	    --workflow "make grade STAGE=$(STAGE)$(if $(GRADE_SRC), DIR=$(GRADE_SRC))"

# The grader proven (tests/grade/check.sh): the references score full
# marks, each wrong implementation of tests/grade/wrong/ what its header
# says, each lab what its manifest expects, and once solved full marks.
grade-check:
	@./tests/grade/check.sh

# A lab (labs/0N-name.lab; tools/lab.sh writes it): lab/0N-name/, the
# stage with its model's core cut out, to write and then grade with
# make grade STAGE=N DIR=lab/0N-name. A lab folder that exists is never
# written over, unless FORCE=1.
lab:
	@./tools/lab.sh new $(or $(wildcard labs/0$(STAGE)-*.lab),labs/0$(STAGE).lab) \
	    $(if $(filter-out 0,$(FORCE)),--force)

run: all
	@bin=$$(ls -d $(B)/0$(STAGE)-* 2>/dev/null | head -1); \
	if [ -z "$$bin" ]; then echo "make run: STAGE is a stage's number, 1 to 6 (STAGE=4 runs 04-select), not '$(STAGE)'; stages: $(STAGE_DIRS)"; exit 2; fi; \
	echo "running $$bin (Ctrl-C to stop; try: curl http://127.0.0.1:800$(STAGE)/)"; \
	exec $$bin $(ARGS)

demo: all
	@./bench/demo.sh $(B)

bench: all examples
	@./tools/deps.sh --optional || true
	@./bench/bench.sh $(B)

# The many-clients run of make bench ("bytes"), short and alone: one round
# of SCALE_CLIENTS clients against 05 and 06; fails unless every request is
# answered. Its report goes to build/scale/.
SCALE_CLIENTS ?= 20000
scale: all
	@BENCH_SCENARIOS=bytes BENCH_STAGES=05-epoll-callbacks,06-coroutines \
	    BENCH_SCALE_SIZES=$(SCALE_CLIENTS) BENCH_ROUNDS=1 \
	    BENCH_RESULTS=$(B)/scale ./bench/bench.sh $(B)

deps:
	@./tools/deps.sh --optional

fuzz:
	@$(MAKE) -f tests/fuzz/fuzz.mk

clean:
	rm -rf build

# The comment that opens this file, whatever its length.
help:
	@sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' Makefile

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
