# Thin wrapper over CMake. `make` builds into build/, `make test` runs every test,
# `make demo` runs the three-tenant demo (root).
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build asan test unit-test integration-test demo clean format

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DNSPROXY_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)

# Every test, twice: the release build and the ASan+UBSan build. Warnings are errors.
test: deps
	@$(MAKE) --no-print-directory build CMAKE_FLAGS="-DNSPROXY_WERROR=ON"
	@$(MAKE) --no-print-directory asan CMAKE_FLAGS="-DNSPROXY_WERROR=ON"
	@scripts/run-tests.sh $(BUILD)
	@scripts/run-tests.sh $(BUILD_ASAN)

demo: build
	@scripts/demo.sh $(BUILD)

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
