# Thin wrapper over CMake. `make` builds into build/, `make test` runs every test,
# `make demo` runs the three-tenant demo (root), `make install` installs (PREFIX, DESTDIR,
# CNI_BIN_DIR, SYSTEMD_UNIT_DIR), `make package` builds build/nsproxy_<version>_<arch>.deb.
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
BUILD_TSAN ?= build-tsan
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = fuzz_control_request fuzz_cni_config fuzz_http_request fuzz_tls_request
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=
PREFIX     ?= /usr/local
CNI_BIN_DIR ?= /opt/cni/bin
SYSTEMD_UNIT_DIR ?=
DESTDIR    ?=
# make install: SYSTEMD_UNIT_DIR empty means $(PREFIX)/lib/systemd/system (systemd reads
# /usr/local/lib/systemd/system too). The package: Debian's paths.
INSTALL_PATHS = -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DNSPROXY_CNI_BIN_DIR=$(CNI_BIN_DIR) \
                -DNSPROXY_SYSTEMD_UNIT_DIR=$(SYSTEMD_UNIT_DIR)
PACKAGE_PATHS = -DCMAKE_INSTALL_PREFIX=/usr -DNSPROXY_CNI_BIN_DIR=/usr/lib/cni \
                -DNSPROXY_SYSTEMD_UNIT_DIR=/lib/systemd/system

.PHONY: all deps build asan tsan tsan-test test unit-test integration-test demo clean format format-check fuzz bench install package image

all: build

deps:
	@scripts/install-deps.sh
	@scripts/install-npm-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DNSPROXY_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)

# ThreadSanitizer build: the main thread and the worker threads (--workers). Not part of
# `make test` (a fourth build would double CI's time); run it after changing what crosses
# threads: forward/acceptor, worker, tenant, listener, connection_budget (docs/workers.md).
tsan: deps
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNSPROXY_TSAN=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_TSAN) -j $(JOBS)

# The unit and integration tests under ThreadSanitizer (a race makes nsproxyd exit 66,
# which fails the test that ran it).
tsan-test: tsan
	@scripts/run-tests.sh $(BUILD_TSAN)

# Every test, twice: the release build and the ASan+UBSan build. Warnings are errors.
# The release build is also packaged (its .deb is checked by the package.* tests) and
# installed into a scratch DESTDIR (the layout README quotes).
test: deps
	@$(MAKE) --no-print-directory build CMAKE_FLAGS="-DNSPROXY_WERROR=ON"
	@$(MAKE) --no-print-directory asan CMAKE_FLAGS="-DNSPROXY_WERROR=ON"
	@$(MAKE) --no-print-directory package
	@test/package/check_install_layout.sh $(BUILD)
	@scripts/run-tests.sh $(BUILD)
	@scripts/run-tests.sh $(BUILD_ASAN)

# Installs from the release build: $(PREFIX)/sbin/nsproxyd, $(PREFIX)/bin/nsproxyctl,
# $(CNI_BIN_DIR)/nsproxy, units, man pages, docs (dist/install-layout.txt).
install: build
	@cmake -S . -B $(BUILD) $(INSTALL_PATHS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target nsproxy_dist_files
	@DESTDIR="$(DESTDIR)" cmake --install $(BUILD)

# The Debian package, from the same release build (CPack DEB, dependencies from
# dpkg-shlibdeps): /usr/sbin, /usr/bin, /usr/lib/cni, /lib/systemd/system, /etc/default.
package: build
	@cmake -S . -B $(BUILD) $(PACKAGE_PATHS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && cpack -G DEB >cpack.log 2>&1 || { cat cpack.log; exit 1; }
	@ls $(BUILD)/nsproxy_*.deb

# The node agent image (deploy/container/Containerfile): the package and the agent's
# entrypoint as the build context. Pulls debian:bookworm-slim, so it needs a registry;
# the tests import an equivalent image offline instead (test/tools/agent-rootfs.sh).
VERSION := $(shell grep -m1 -o 'nsproxy VERSION [0-9.]*' CMakeLists.txt | cut -d' ' -f3)
IMAGE   ?= nsproxy-agent:$(VERSION)
image: package
	@rm -rf $(BUILD)/image-context && mkdir -p $(BUILD)/image-context
	@cp $(BUILD)/nsproxy_*.deb deploy/container/nsproxy-agent $(BUILD)/image-context/
	podman build -f deploy/container/Containerfile -t $(IMAGE) $(BUILD)/image-context

# libFuzzer targets (clang, ASan+UBSan) in $(BUILD_FUZZ), each run for FUZZ_SECONDS on a
# copy of test/fuzz/corpus/<target>/. A crash leaves its input in
# $(BUILD_FUZZ)/fuzz-artifacts/<target>/ and fails. CI: 60 s; a long run:
# `make fuzz FUZZ_SECONDS=3600` (docs/fuzzing.md).
fuzz: deps
	@cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNSPROXY_FUZZ=ON -DNSPROXY_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS) --target $(FUZZ_TARGETS)
	@test/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

demo: build
	@scripts/demo.sh $(BUILD)

# Benchmarks against HAProxy 2.6 and the reference loopback CNI plugin (root; never part
# of `make test`; about 8 minutes). Method and figures: docs/benchmarks.md.
bench: build
	@test "$$(id -u)" -eq 0 || { echo "make bench: run as root" >&2; exit 1; }
	@test/bench/run.sh $(BUILD)

# `make format` rewrites every C++ file as .clang-format says, and the JavaScript of the
# tests as prettier (pinned in test/deploy/package-lock.json) says; `make format-check`
# (CI) fails, listing the files and lines, when one differs from that.
PRETTIER = test/deploy/node_modules/.bin/prettier --config test/deploy/.prettierrc.json
format: deps
	@clang-format -i $$(git ls-files '*.cc' '*.h')
	@$(PRETTIER) --log-level warn --write $$(git ls-files '*.mjs')

format-check: deps
	@clang-format --dry-run --Werror $$(git ls-files '*.cc' '*.h')
	@$(PRETTIER) --check $$(git ls-files '*.mjs')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ) $(BUILD_TSAN)
