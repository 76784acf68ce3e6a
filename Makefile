# The two README commands and their parts. Meson + Ninja do the building.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
PROVIUM    := $(BUILD)/provium
RUN_FLAGS  ?=
PREFIX     ?= /usr/local
DESTDIR    ?=

.PHONY: all bootstrap build image image-lean demo check unit acceptance acceptance-local check-asan check-fresh fuzz fuzz-tools fuzz-replay bench format clean install uninstall deb

all: build

bootstrap:
	scripts/bootstrap

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: bootstrap $(BUILD)/build.ninja
	ninja -C $(BUILD)

# PREFIX/bin/provium and provium-coverage, PREFIX/libexec/provium (the agent, the VM helper),
# PREFIX/share/provium (the image builders, types/provium.lua, the documents and templates),
# PREFIX/share/man. An installed provium finds them from its own path, so DESTDIR works as is.
install: build
	meson configure $(BUILD) --prefix=$(abspath $(PREFIX)) >/dev/null
	meson install -C $(BUILD) --quiet $(if $(DESTDIR),--destdir $(abspath $(DESTDIR)))

# What the last make install put there (meson's install log).
uninstall:
	ninja -C $(BUILD) uninstall >/dev/null

# The Debian package, ../provium_VERSION_amd64.deb (debian/: dh with meson).
deb: bootstrap
	DEB_BUILD_OPTIONS="nocheck parallel=$(JOBS)" dpkg-buildpackage -us -uc -b

image: build
	$(PROVIUM) image build default

# The kernel "lean" image of tests/lean.test.lua (docs/images.md), built before the suite: the
# kernel's first build takes about five minutes here, which no test's timeout should meet.
image-lean: image
	PROVIUM_IMAGE_PATH=tests/images $(PROVIUM) image build lean

# Boots real VMs: the examples/ a newcomer reads first.
demo: image
	$(PROVIUM) $(RUN_FLAGS) -j $(JOBS) examples/

unit: build
	meson test -C $(BUILD) --print-errorlogs

# Every event of the run is then validated against docs/events.schema.json (silent when valid,
# so the run's own last line stays the last).
acceptance: image image-lean
	$(PROVIUM) $(RUN_FLAGS) -j $(JOBS) --events $(BUILD)/check-events.mp tests/
	@scripts/check-events --provium $(PROVIUM) $(BUILD)/check-events.mp

# The files that drive the run's own VMs, and the examples, again under --vmm local: what needs
# a guest kernel is skipped with its reason (docs/local.md). Before the full suite, whose line
# stays the last.
LOCAL_TESTS = $(addprefix tests/,$(addsuffix .test.lua,boot capture clock disks exec files \
        fixture handles layer0 lifecycle local netem network process recipes reset services \
        snapshot transfers uplink workers)) examples/
acceptance-local: image
	$(PROVIUM) $(RUN_FLAGS) --vmm local -j $(JOBS) --events $(BUILD)/check-events-local.mp \
	        $(LOCAL_TESTS)
	@scripts/check-events --provium $(PROVIUM) $(BUILD)/check-events-local.mp

# Around the acceptance suites, scripts/check-leaks: what of ours (QEMU, runners, links, run
# and staging directories, mounts, cgroups) exists after them and did not before fails the run,
# each named. Silent when nothing leaked, so the suite's line stays the last.
check: unit fuzz-replay
	@scripts/check-leaks snapshot $(BUILD)/leaks-before.json
	@$(MAKE) --no-print-directory acceptance-local acceptance
	@scripts/check-leaks compare $(BUILD)/leaks-before.json

# libFuzzer targets (tests/fuzz/, docs/reliability.md): the replay of their committed corpora
# is part of check; make fuzz runs each for FUZZ_SECONDS on a working copy in $(BUILD)/fuzz.
FUZZ_SECONDS ?= 60
fuzz-tools:
	scripts/bootstrap clang libclang-rt-dev

fuzz-replay: build fuzz-tools
	scripts/fuzz $(BUILD) replay

fuzz: build fuzz-tools
	scripts/fuzz $(BUILD) run $(FUZZ_SECONDS)

# The same suite with provium built under AddressSanitizer and UBSan. A leak or error makes a
# file runner exit with status 23, which the dispatcher reports as a failure of that file. The agent stays the
# static one from $(BUILD): sanitizers do not link statically, and the guest does not need them.
$(ASAN_BUILD)/build.ninja: | build
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
	        -Dagent=false -Dagent_path=$(abspath $(BUILD))/provium-agent

check-asan: image $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	        meson test -C $(ASAN_BUILD) --print-errorlogs
	ASAN_OPTIONS=detect_leaks=1:exitcode=23 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=23 \
	        $(ASAN_BUILD)/provium $(RUN_FLAGS) --vmm local -j $(JOBS) $(LOCAL_TESTS)
	ASAN_OPTIONS=detect_leaks=1:exitcode=23 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=23 \
	        $(ASAN_BUILD)/provium $(RUN_FLAGS) -j $(JOBS) --events $(ASAN_BUILD)/check-events.mp tests/
	@scripts/check-events --provium $(ASAN_BUILD)/provium $(ASAN_BUILD)/check-events.mp

# The two README commands in a minimal Debian root made by debootstrap, from a clean clone of
# HEAD (scripts/check-fresh): many minutes, not for CI.
check-fresh:
	scripts/check-fresh

bench: image
	bench/run

format:
	scripts/bootstrap clang-format
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
