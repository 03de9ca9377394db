# Two commands for a newcomer:  `make demo` (install, pull the default model, complete a sample file, print tok/s)
#                               `make test` (install with test extras, run every test: Python, VS Code unit, VS Code e2e)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WL := $(VENV)/bin/waferline

.PHONY: install demo test test-python test-vscode e2e bench bench-wafer vsix clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) bench/anchor.py  # the llama.cpp the tests start must run here: rebuilt without AMX when a native build dies
	touch $@

install: $(VENV)/.installed

demo: install
	$(WL) model pull
	$(WL) complete examples/sample.py:16:1 --mode block
	$(WL) generate --file examples/sample.py --max-tokens 64 --greedy
	$(WL) simulate --model qwen2.5-coder-0.5b --hardware wse3

test: test-python test-vscode e2e

test-python: install
	$(WL) model pull
	$(WL) model pull smollm2-135m
	$(PY) -m pytest -q

test-vscode:
	cd vscode-client && npm ci --no-audit --no-fund --loglevel=error && npm test

e2e: install
	WAFERLINE_PYTHON=$(abspath $(PY)) bash vscode-client/scripts/e2e.sh

vsix:
	cd vscode-client && npm ci --no-audit --no-fund --loglevel=error && npm run package

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/anchor.py
	$(PY) bench/decode.py

bench-wafer: install
	$(PY) bench/wafer_validation.py

clean:
	rm -rf $(VENV) build *.egg-info vscode-client/node_modules vscode-client/out
