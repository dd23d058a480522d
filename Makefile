# Two commands matter: `make demo` and `make test`. Both build their own
# virtualenv in .venv from the Python found on PATH (3.11 or newer).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LEGACY := $(VENV)/legacy-1.2.8

.PHONY: demo test lint docs venv clean bench

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg requirements/test.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . -r requirements/test.txt
	@# The MariaDB/MySQL driver compiles against the client library; without
	@# it the MariaDB tests are skipped (and CI, which installs it, fails).
	$(BIN)/python -m pip install -q 'mysqlclient>=2.2' \
		|| echo "note: mysqlclient could not be built; MariaDB tests will be skipped"
	@# The real django-background-tasks 1.2.8, for the in-place upgrade test.
	$(BIN)/python -m pip install -q --no-deps --target $(LEGACY) \
		'django-background-tasks==1.2.8' 'six>=1.16' \
		|| echo "note: django-background-tasks 1.2.8 not installed; upgrade tests will be skipped"
	touch $@

demo: venv
	$(BIN)/python demo/run.py

test: venv
	$(BIN)/python tests/run_suite.py

lint: venv
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy background_task

docs: venv
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build dist site *.egg-info

# Benchmarks: make bench BENCH_ARGS="--db postgres --size 20000 --repeat 3"
BENCH_ARGS ?=
bench: venv
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
