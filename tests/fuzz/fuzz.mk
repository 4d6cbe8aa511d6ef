# fuzz.mk: the libFuzzer targets (clang only), run by `make fuzz`.
#
#   make fuzz                          build, then run each target FUZZ_SECONDS
#   make fuzz FUZZ_SECONDS=300         a longer run
#   make -f tests/fuzz/fuzz.mk fuzz-smoke   20 s each: what CI runs
#   make -f tests/fuzz/fuzz.mk fuzz-build   build only
#   make -f tests/fuzz/fuzz.mk fuzz-http    one target (or fuzz-exchange)
#
# Targets (tests/fuzz/*.c say what each checks):
#   fuzz_http      the request parser, common/http.c
#   fuzz_exchange  request validation and JSON answers, common/exchange.c
#
# Each run works on build/fuzz/corpus/NAME, seeded with a copy of
# tests/fuzz/corpus/NAME and tests/fuzz/regressions/NAME, so what a run
# learns is kept for the next run but never written into the repository.
# A finding (crash, sanitizer report, broken invariant) stops the run with
# the input saved under build/fuzz/artifacts/NAME/. Replay it with
#   build/fuzz/fuzz_NAME build/fuzz/artifacts/NAME/crash-...
# fix the code, and keep the input in tests/fuzz/regressions/NAME/ so that
# tests/test_fuzz_regressions.c (make test) replays it for good.

CLANG        ?= clang
FUZZ_SECONDS ?= 60
SMOKE_SECONDS ?= 20
FB           := build/fuzz
FUZZ_TARGETS := http exchange

CJSON_CFLAGS := $(shell pkg-config --cflags libcjson 2>/dev/null)
CJSON_LIBS   := $(shell pkg-config --libs libcjson 2>/dev/null || echo -lcjson)

# -O1 -g: fast enough, readable stack traces. ASan + UBSan with recovery
# off, so undefined behaviour is a finding like a crash.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror \
               -Icommon $(CJSON_CFLAGS) -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

# -max_len: past the 8 KiB head limit, so 431 and big bodies are reachable.
# -timeout: an input that takes seconds is a finding too (quadratic work).
FUZZ_RUN_FLAGS := -max_len=20000 -timeout=10 -print_final_stats=1 $(FUZZ_FLAGS)
FUZZ_OPTS_http     := -dict=tests/fuzz/http.dict
FUZZ_OPTS_exchange := -dict=tests/fuzz/json.dict

SRC_http     := tests/fuzz/fuzz_http.c common/http.c
SRC_exchange := tests/fuzz/fuzz_exchange.c common/exchange.c common/utf8.c
LIBS_http    :=
LIBS_exchange := $(CJSON_LIBS) -lm -pthread

.PHONY: fuzz fuzz-build fuzz-smoke $(addprefix fuzz-,$(FUZZ_TARGETS))

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	    $(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk fuzz-$$t \
	        FUZZ_SECONDS=$(FUZZ_SECONDS) || exit 1; \
	done
	@echo "fuzz: no findings ($(FUZZ_SECONDS) s per target)"

fuzz-smoke:
	@$(MAKE) --no-print-directory -f tests/fuzz/fuzz.mk fuzz \
	    FUZZ_SECONDS=$(SMOKE_SECONDS)

fuzz-build: $(addprefix $(FB)/fuzz_,$(FUZZ_TARGETS))

.SECONDEXPANSION:
$(FB)/fuzz_%: $$(SRC_$$*) tests/fuzz/fuzz_common.h common/http.h common/exchange.h
	@mkdir -p $(dir $@)
	@command -v $(CLANG) >/dev/null || { \
	    echo "fuzz: $(CLANG) not found (apt-get install clang)"; exit 1; }
	@echo "$(CLANG) -fsanitize=fuzzer,address,undefined ... -o $@"
	@$(CLANG) $(FUZZ_CFLAGS) $(SRC_$*) $(LIBS_$*) -o $@ || { \
	    echo "fuzz: if -fsanitize=fuzzer failed to link, install" \
	         "libclang-rt-14-dev (or the one matching your clang)"; exit 1; }

$(addprefix fuzz-,$(FUZZ_TARGETS)): fuzz-%: $(FB)/fuzz_%
	@echo "== fuzz_$* for $(FUZZ_SECONDS) s"
	@mkdir -p $(FB)/corpus/$* $(FB)/artifacts/$*
	@cp tests/fuzz/corpus/$*/* $(FB)/corpus/$*/
	@cp tests/fuzz/regressions/$*/* $(FB)/corpus/$*/
	@$(FB)/fuzz_$* $(FUZZ_RUN_FLAGS) $(FUZZ_OPTS_$*) \
	    -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FB)/artifacts/$*/ $(FB)/corpus/$* \
	    > $(FB)/fuzz_$*.log 2>&1 || { \
	    tail -n 60 $(FB)/fuzz_$*.log; \
	    echo "fuzz_$*: FINDING; input saved in $(FB)/artifacts/$*/"; \
	    echo "replay: $(FB)/fuzz_$* FILE; once fixed keep FILE in" \
	         "tests/fuzz/regressions/$*/"; exit 1; }
	@grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|Done )' \
	    $(FB)/fuzz_$*.log | tail -n 3
	@echo "fuzz_$*: no findings (log: $(FB)/fuzz_$*.log)"
