# mlops-workbench: `make demo` runs the lifecycle end to end, `make test` runs every check.
# Both set up everything on a fresh machine: a .venv with the package, its test tools and the
# JupyterLab extension; `make test` also installs the Debian packages the tests start (chromium,
# postgresql, redis-server, prometheus, prometheus-alertmanager; wrk for the serving bench) when they are missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXT := extensions/mlops_workbench_lab
EXT_SOURCES := $(wildcard $(EXT)/pyproject.toml $(EXT)/package.json $(EXT)/yarn.lock $(EXT)/src/*.ts $(EXT)/style/* $(EXT)/mlops_workbench_lab/*.py)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_PACKAGES := chromium postgresql redis-server prometheus prometheus-alertmanager wrk
PYTEST_ARGS ?=

.PHONY: demo test install sysdeps check-sync layers nbtest pytest bench clean

demo: install
	$(BIN)/mlw demo

test: sysdeps install check-sync layers nbtest pytest

install: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini $(EXT_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# the extension after the library: its handlers import mlops_workbench (its build always recompiles the frontend)
	$(BIN)/python -m pip install --quiet $(EXT)
	touch $@

# Debian packages the tests start for real: headless Chromium for the browser tests, PostgreSQL for
# the metadata backend contract, redis-server for the online feature store contract, Prometheus to scrape the
# gateway's and the dashboards' /metrics (promtool tests the shipped rules), Alertmanager to receive what fires; wrk is
# the load generator of bench/serving.py. Installed only when missing.
sysdeps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	[ -x /usr/bin/prometheus ] || missing="$$missing prometheus"; \
	[ -x /usr/bin/prometheus-alertmanager ] || missing="$$missing prometheus-alertmanager"; \
	[ -x /usr/bin/wrk ] || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The package and the notebooks agree: exporting and cleaning change nothing that is committed.
check-sync: install
	$(BIN)/nbdev_export
	@test -z "$$(git status --porcelain -- mlops_workbench)" || { git status --porcelain -- mlops_workbench; \
	  echo "nbdev_export changed mlops_workbench/: the package does not match nbs/ (export and commit, or move the edit into its notebook)"; exit 1; }
	$(BIN)/nbdev_clean
	@for nb in mlops_workbench/pipelines/*.ipynb dashboards/voila/*.ipynb; do $(BIN)/nbdev_clean --fname "$$nb" || exit 1; done
	@test -z "$$(git status --porcelain -- nbs mlops_workbench/pipelines dashboards)" || { git status --porcelain -- nbs mlops_workbench/pipelines dashboards; \
	  echo "nbdev_clean changed notebooks: commit the cleaned notebooks"; exit 1; }

# The package's layering (.importlinter): a stage imports core and the stages before it, never a later one, and no two
# modules of a package import each other; a violation names the import that breaks it.
layers: install
	$(BIN)/lint-imports

nbtest: install
	$(BIN)/nbdev_test --n_workers 2

# --durations: the slowest tests named at the end of every run, so CI time can be watched where it goes
pytest: install sysdeps
	$(BIN)/python -m pytest tests -q -p no:cacheprovider --durations=30 $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/pipeline_overhead.py

clean:
	rm -rf $(VENV) test-output workspace build *.egg-info
