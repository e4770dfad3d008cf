# One-command set-up: `make demo` and `make test` create .venv and install everything first.
VENV ?= .venv
PY := $(VENV)/bin/python
ARCH := $(shell uname -m)
# The torch builds known to work here (torchvision is needed by open_clip).
ifeq ($(ARCH),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-avx2 bench clean torch-pins

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@ldconfig -p | grep -q libusb-1.0 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libusb-1.0-0; }
	@# headless Chromium loads the search result pages in the retrieval tests
	@[ -x /usr/bin/chromium ] || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	@echo "== synthetic smoke run of the real pipeline: random frozen nano CLIP, synthetic primitives =="
	$(PY) examples/make_heldout.py runs/demo/heldout --per-class 20 --seed 1000
	$(VENV)/bin/vitlens train --recipe tiny-cpu output_dir=runs/demo/train
	$(VENV)/bin/vitlens eval runs/demo/heldout --checkpoint runs/demo/train/final \
		--template "a point cloud model of {}." --out runs/demo/eval
	@echo "chance is 1/6 = 16.7% top-1; outputs in runs/demo/ (loss.png, metrics, confusion.png)"

test: setup
	$(PY) -m pytest -q

# The suite once more on AVX2 code paths (torch's kernels and numba's code generation), as an AVX2-only CPU
# runs it: no result may depend on the SIMD width of the machine that runs the tests.
test-avx2: setup
	ATEN_CPU_CAPABILITY=avx2 NUMBA_CPU_NAME=haswell $(PY) -m pytest -q

# The torch pins above, for installs outside .venv (.ci/wheel_smoke.sh).
torch-pins:
	@echo $(TORCH)

bench: setup
	$(PY) benchmarks/bench_sampling.py
	$(PY) benchmarks/bench_lens.py

clean:
	rm -rf $(VENV) examples/shapes runs/demo
