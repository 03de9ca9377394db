# Two commands for a newcomer:  `make demo` (install, pull the default model, complete a sample file)
#                               `make test` (install with test extras, run every test)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WL := $(VENV)/bin/waferline

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(WL) model pull
	$(WL) generate --file examples/sample.py --max-tokens 64 --greedy

test: install
	$(WL) model pull
	$(PY) -m pytest -q

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/decode.py

clean:
	rm -rf $(VENV) build *.egg-info
