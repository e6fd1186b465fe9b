# Two commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: install chromium demo test lint bench schema screenshot clean gpu-wheels gpu-check

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[train,test,demo,view]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP) chromium

# The browser test of `eyeful view` drives Debian's chromium (Playwright's own browser downloads
# are never used). Installed when missing; on CI a machine without it is an error, not a skip.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	elif [ -n "$$CI" ]; then \
		echo "error: chromium is missing and apt-get (as root) is not available" >&2; exit 1; \
	else \
		echo "note: chromium not installed (needs apt-get as root): the browser test of eyeful view will be skipped" >&2; \
	fi

demo: install
	$(VENV)/bin/eyeful demo --workdir demo_run

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install lint
	$(PY) -m pytest -q tests

bench: install
	$(PY) -m bench

schema: install
	$(VENV)/bin/eyeful schema

# On a machine with pip access: the dependencies a CUDA machine lacks, as wheels in .whl/.
WHEEL_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
	manylinux2014_x86_64 manylinux1_x86_64
gpu-wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp $(addprefix --platform ,$(WHEEL_PLATFORMS)) -d .whl \
		-r bench/gpu_wheels.txt

# On a CUDA machine (no package index needed): gpu tests, nerfacto 2,000 steps fp16, eval,
# resume, DDP; prints steps/s, rays/s, peak memory, held-out PSNR and the hash grid that ran.
# GPU_CHECK_DEVICE=cpu make gpu-check is a dry run of the same steps on the CPU.
gpu-check:
	bash bench/gpu_check.sh

# the README's picture of `eyeful view` on the synthetic capture, from the browser test
screenshot: install
	EYEFUL_VIEW_SCREENSHOT=docs/images/view.png $(PY) -m pytest -q tests/test_view.py -k browser

clean:
	rm -rf demo_run .pytest_cache
