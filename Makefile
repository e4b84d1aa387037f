# warmexec: the top-level entry points.  CMake does the building; this file
# installs missing Debian packages and names the usual targets.
#
#   make              build into build/ (programs in build/bin/)
#   make test         build with -Werror and run the suite, then the same
#                     suite again under AddressSanitizer + UBSan
#   make demo         build and run the bundled example
#   make bench        run the benchmarks (figures for docs/performance.md)
#   make fuzz         build the libFuzzer target with clang (build-fuzz/) and
#                     fuzz the frame/JSON-RPC reader for FUZZ_TIME seconds
#                     (default 60) on a copy of fuzz/corpus/frame
#   make install PREFIX=/usr/local

PREFIX ?= /usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME ?= 60

DEB_PACKAGES = gcc make cmake pkg-config libjansson-dev libssl-dev \
	libsodium-dev libsqlite3-dev libcmocka-dev python3 libopenmpi-dev \
	openmpi-bin

CMAKE_RELEASE = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWX_WERROR=ON
CMAKE_ASAN = -DCMAKE_BUILD_TYPE=Debug -DWX_WERROR=ON -DWX_SANITIZE=ON
# libFuzzer comes with clang (libclang-rt-dev); llvm-symbolizer with llvm.
FUZZ_DEB_PACKAGES = clang libclang-rt-dev llvm
CMAKE_FUZZ = -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DWX_FUZZ=ON

.PHONY: all deps build test test-release test-asan demo bench install clean \
	fuzz

all: build

deps:
	@sh scripts/install-deps.sh $(DEB_PACKAGES)

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_RELEASE)
	cmake --build $(BUILD) -j$(JOBS)

test: test-release test-asan

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) $(CMAKE_ASAN)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS)

demo: build
	@sh examples/demo.sh $(BUILD)/bin/warmexec

bench: build
	@sh bench/run.sh $(BUILD)

# The fuzzer works on a copy of the committed corpus: what it finds stays in
# $(FUZZ_BUILD)/corpus-frame, crashes in $(FUZZ_BUILD)/fuzz-artifacts/.
fuzz: deps
	@sh scripts/install-deps.sh $(FUZZ_DEB_PACKAGES)
	cmake -S . -B $(FUZZ_BUILD) $(CMAKE_FUZZ)
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_frame
	rm -rf $(FUZZ_BUILD)/corpus-frame
	mkdir -p $(FUZZ_BUILD)/corpus-frame $(FUZZ_BUILD)/fuzz-artifacts
	cp fuzz/corpus/frame/* $(FUZZ_BUILD)/corpus-frame/
	$(FUZZ_BUILD)/bin/fuzz_frame -max_total_time=$(FUZZ_TIME) \
		-max_len=8192 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_BUILD)/fuzz-artifacts/ \
		$(FUZZ_BUILD)/corpus-frame

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
