# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with $(PYTHON) and install what is missing; quick when nothing is.
PYTHON ?= python3.12
VENV ?= .venv
PY := $(VENV)/bin/python

# Under pyenv a `python3.12` shim exists but refuses to run unless 3.12 is the
# selected version; expose every installed version so the shims resolve.
ifeq ($(origin PYENV_VERSION),undefined)
PYENV_ALL := $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare 2>/dev/null | paste -sd: -)
ifneq ($(PYENV_ALL),)
export PYENV_VERSION := $(PYENV_ALL)
endif
endif

STAMP := $(VENV)/.installed-$(notdir $(PYTHON))

.PHONY: demo test test-fast install clean bench bench-quick

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 && $(PYTHON) --version >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python >= 3.12 or pass PYTHON=..." >&2; exit 2; }
	@if [ -x $(PY) ] && [ ! -f $(STAMP) ]; then echo "recreating $(VENV) for $(PYTHON)"; rm -rf $(VENV); fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bayes-lse demo

# Tests run in parallel (pytest-xdist): one worker per core, at most 4 (each worker holds
# PyMC, JAX and numba, ~1 GB).  Tests are handed out one by one and idle workers steal
# queued ones ("worksteal"): with whole modules per worker ("loadscope") the last 10 % of
# the suite ran 17 minutes on one worker, as the modules with the slow statistical tests
# came last.  The slowest 30 tests are listed at the end.  WORKERS=0 runs serially.
WORKERS ?= auto
XDIST = $(if $(filter 0,$(WORKERS)),--durations=30,-n $(WORKERS) --maxprocesses 4 --dist worksteal --durations=30)

test: $(STAMP)
	$(PY) -m pytest $(XDIST)

test-fast: $(STAMP)
	$(PY) -m pytest $(XDIST) -m "not slow and not browser"

# Benchmarks print figures and write benchmarks/results/latest.json; they are not tests.
# Pass BENCH_ARGS, e.g. make bench BENCH_ARGS="--cases recommend --cache cold".
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m benchmarks --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
