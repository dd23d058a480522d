# Two commands matter: `make demo` and `make test`. Both build their own
# virtualenv in .venv from the Python found on PATH (3.11 or newer).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LEGACY := $(VENV)/legacy-1.2.8

.PHONY: demo test lint docs venv venv6 clean bench

# Django 6.x needs Python 3.12+: the suite runs a second time in this
# environment when such a Python is found (always in CI).
VENV6 ?= .venv-django6
PYTHON_DJANGO6 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13 \
	$(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.13 python3.12 2>/dev/null))

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

# $(call django6_venv,DIR,DJANGO REQUIREMENT): a Django 6 virtualenv for the suite.
# The suite's own needs (requirements/test.txt adds the lint, type and docs
# tools and the browser test's selenium, which run in the main pass only).
DJANGO6_TEST_DEPS := 'pytest>=8.0' 'pytest-django>=4.8' 'psycopg[binary]>=3.1' 'hypothesis>=6.100' \
	'gunicorn>=22.0' 'uvicorn>=0.30'
define django6_venv
	@if [ -z "$(PYTHON_DJANGO6)" ]; then \
		echo "note: no Python 3.12+ found; the Django 6 tests will be skipped"; \
	else \
		$(PYTHON_DJANGO6) -m venv $(1) \
		&& $(1)/bin/python -m pip install -q --upgrade pip \
		&& $(1)/bin/python -m pip install -q '$(2)' -e . $(DJANGO6_TEST_DEPS) \
		&& ($(1)/bin/python -m pip install -q 'mysqlclient>=2.2' \
			|| echo "note: mysqlclient could not be built in $(1)") \
		&& touch $(1)/.installed; \
	fi
endef

DJANGO61 := django>=6.1,<6.2
DJANGO60 := django>=6.0,<6.1
VENV60 ?= .venv-django60

$(VENV6)/.installed: setup.cfg requirements/test.txt
	$(call django6_venv,$(VENV6),$(DJANGO61))

# Django 6.0 too, for the django.tasks backend's tests.
$(VENV60)/.installed: setup.cfg requirements/test.txt
	$(call django6_venv,$(VENV60),$(DJANGO60))

venv6: $(VENV6)/.installed $(VENV60)/.installed

test: venv venv6
	$(BIN)/python tests/run_suite.py

lint: venv
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy background_task
	$(BIN)/python tests/layers.py

docs: venv
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(VENV6) $(VENV60) build dist site *.egg-info

# Benchmarks: make bench BENCH_ARGS="--db postgres --size 20000 --repeat 3"
BENCH_ARGS ?=
bench: venv
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
