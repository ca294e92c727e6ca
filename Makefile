# hybridos: `make demo` runs the embedded demo, `make test` the test suite; both bootstrap what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PLUGINS := $(wildcard plugins/*/pyproject.toml)
PYTEST_WORKERS ?= 2

.PHONY: venv system-deps test demo bench lint clean

$(STAMP): pyproject.toml $(PLUGINS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

test: venv system-deps
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

demo: venv system-deps
	PATH="$(abspath $(VENV))/bin:$$PATH" bash examples/demo.sh

bench: venv system-deps
	$(PY) bench/run.py $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check core plugins tests bench examples

clean:
	rm -rf $(VENV) demo build
