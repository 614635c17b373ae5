# The two commands a new machine needs: `make demo` and `make test`.
# Both install missing Debian packages first (scripts/bootstrap).

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60

.PHONY: all bootstrap build build-asan build-tsan test test-fast demo fuzz bench clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMTRACE_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Reader, reporters, CLI and unit tests under ASan+UBSan. The preload library
# in this tree is built without sanitizers (see tracer/CMakeLists.txt).
build-asan: bootstrap
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMEMTRACE_WERROR=ON \
	    -DMEMTRACE_ASAN=ON -DMEMTRACE_UBSAN=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# The tracer's buffer hand-off under ThreadSanitizer (one test program).
build-tsan: bootstrap
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMEMTRACE_WERROR=ON \
	    -DMEMTRACE_TSAN=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS) --target mt_tracer_handoff

# Every test, through ctest: the normal build, the ASan+UBSan build, and the
# TSan build of the buffer hand-off.
test: build build-asan build-tsan
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE 'nosan|tsan'
	@cd $(TSAN_BUILD) && ctest --output-on-failure -L tsan

# Only the normal build (quicker, for the edit-compile-test loop).
test-fast: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: build
	@scripts/demo $(BUILD)

bench: build
	@bench/run $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) build-fuzz

# The reader's libFuzzer target, for as long as asked: make fuzz FUZZ_SECONDS=600
fuzz: bootstrap
	@scripts/fuzz $(FUZZ_SECONDS)
