# Contracts (see README and docs/contracts.md): `make build`, `make test`, `make demo`, `make eval`, plugin at
# Plugin/lib/libgstocdedit.so, CLI at .build/release/ocdedit. `make model` retrains Models/shapes-sd (never in test).
SHELL := /bin/bash
SWIFT ?= swift
APT_PACKAGES := libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libopenblas-dev \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-base-apps gstreamer1.0-plugins-good \
	gstreamer1.0-plugins-ugly pkg-config python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build test demo eval bench model clean fuzz sanitize soak

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c release
	mkdir -p Plugin/lib
	cp -f .build/release/libgstocdedit.so Plugin/lib/

test: build
	$(SWIFT) test -c release --disable-swift-testing

# The main job: a real pipeline on generated input with the bundled small model (Pipelines/demo.sh).
demo: build
	Pipelines/demo.sh

# Edit quality, measured: ocdedit eval in every mode on the committed shapes-world clips (Benchmarks/eval.sh).
eval: build
	Benchmarks/eval.sh

# ocdedit beside diffusers/PyTorch on the same shapes (Benchmarks/compare.sh); the reference stack goes into
# .venv-bench from Benchmarks/requirements.txt (PyPI, about 6 GB with torch's CUDA wheels).
BENCH_VENV := .venv-bench
bench: build $(BENCH_VENV)/bin/python
	PYTHON=$(BENCH_VENV)/bin/python Benchmarks/compare.sh

$(BENCH_VENV)/bin/python:
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -r Benchmarks/requirements.txt

# Retrains Models/shapes-sd from scratch on the generated shapes world (about two hours on 2 cores; resumable:
# state in .train-shapes-sd/, delete it to start over). Never part of `make test`. Same pinned stack as the bench.
model: $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/pip install -q -r Models/shapes-sd/train/requirements.txt
	$(BENCH_VENV)/bin/python Models/shapes-sd/train/train.py --stage all

# Reliability (docs/reliability.md, "Fuzzing, sanitizers and soak"); none is part of `make test`.
# libFuzzer harnesses (Fuzz/) over the safetensors header parser, the config.json readers and the tokenizer, each run
# FUZZ_SECONDS from Fuzz/corpus/<harness>/; fails on any crash (input saved under Fuzz/crashes/<harness>/).
FUZZ_SECONDS ?= 600
FUZZ_HARNESSES ?= FuzzSafetensors FuzzConfig FuzzTokenizer
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) Fuzz/run.sh $(FUZZ_HARNESSES)

# The XCTest suite under AddressSanitizer (.build-asan; SANITIZE_ASAN_FILTER, a swift test --filter regex, empty =
# every test) and the element tests under ThreadSanitizer (.build-tsan), each with the plugin of its own sanitized
# build (Reliability/sanitize.sh); fails on a test failure or any sanitizer report.
SANITIZE_ASAN_FILTER ?=
SANITIZE_TSAN_FILTER ?= ElementTests
sanitize: deps
	SWIFT=$(SWIFT) Reliability/sanitize.sh address '$(SANITIZE_ASAN_FILTER)'
	SWIFT=$(SWIFT) Reliability/sanitize.sh thread '$(SANITIZE_TSAN_FILTER)'

# SOAK_FRAMES 64x64 frames through the element in gst-launch-1.0 with the tiny test model (Reliability/soak.py);
# prints VmRSS every 500 frames, fails if the last differs from the one at frame 500 by over 5 %. SOAK_ARGS: extra
# ocdedit properties (e.g. mode=tokenflow).
SOAK_FRAMES ?= 10000
SOAK_ARGS ?=
soak: build
	SOAK_FRAMES=$(SOAK_FRAMES) python3 Reliability/soak.py $(SOAK_ARGS)

clean:
	rm -rf .build Plugin/lib .build-fuzz .build-asan .build-tsan .fuzz-work
