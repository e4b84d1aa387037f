# warmexec: the top-level entry points.  CMake does the building; this file
# installs missing Debian packages and names the usual targets.
#
#   make              build into build/ (programs in build/bin/)
#   make test         build with -Werror and run the suite, then the same
#                     suite again under AddressSanitizer + UBSan
#   make demo         build and run the bundled example
#   make bench        run the benchmarks (figures for docs/performance.md)
#   make install PREFIX=/usr/local

PREFIX ?= /usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

DEB_PACKAGES = gcc make cmake pkg-config libjansson-dev libssl-dev \
	libsodium-dev libsqlite3-dev libcmocka-dev python3

CMAKE_RELEASE = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWX_WERROR=ON
CMAKE_ASAN = -DCMAKE_BUILD_TYPE=Debug -DWX_WERROR=ON -DWX_SANITIZE=ON

.PHONY: all deps build test test-release test-asan demo bench install clean

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

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
