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

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@ldconfig -p | grep -q libusb-1.0 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libusb-1.0-0; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(PY) examples/make_shapes.py examples/shapes
	$(VENV)/bin/vitlens embed examples/shapes --model tiny \
		--text "a box" --text "a ball" --text "a cylinder" --text "a cone" --text "a ring" \
		--out examples/shapes/embeddings.npy
	@echo "note: 'tiny' has seeded random weights: this demo shows the offline pipeline, not accuracy."

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_sampling.py
	$(PY) benchmarks/bench_lens.py

clean:
	rm -rf $(VENV) examples/shapes
