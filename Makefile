# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Each target is idempotent: stamp files record what was installed, so a second run is quick.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
APT_PACKAGES := chromium fonts-dejavu-core g++
STAMP_RUN := $(VENV)/.stamp-run
STAMP_DEV := $(VENV)/.stamp-dev
STAMP_APT := $(VENV)/.stamp-apt
STAMP_ASSETS := app/static/vendor/.stamp
STAMP_NATIVE := $(VENV)/.stamp-native

.PHONY: run test bench lint install install-dev apt assets clean help

help:
	@echo "make run    - install what the app needs and start it on http://localhost:$(PORT)"
	@echo "make test   - install everything the tests need and run the whole suite"
	@echo "make bench  - run the benchmarks under bench/"
	@echo "make lint   - ruff + mypy"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP_RUN): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . || $(PY) -m pip install -q --no-deps -e .
	touch $@

$(STAMP_DEV): requirements-dev.txt $(STAMP_RUN)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Debian packages the tests need (a real Chromium for the browser tests). Installed with apt-get when
# missing and running as root; otherwise the command to run is printed.
$(STAMP_APT): | $(PY)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "apt-get install:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "Missing Debian packages:$$missing. Run: sudo apt-get install$$missing"; exit 1; fi; \
	fi
	touch $@

# Leaflet/folium JavaScript and CSS served locally, so the map works without a CDN.
$(STAMP_ASSETS): app/vendor_assets.py $(STAMP_RUN)
	$(PY) app/vendor_assets.py
	touch $@

# The audio tower's native CPU kernels (window attention, LayerNorm), compiled for this machine (needs a
# C++ compiler, g++ from apt here; without one the model uses PyTorch's ops and this step says so). The
# stamp is only written once they build and load, so a later run tries again.
$(STAMP_NATIVE): sat2sound_core/accel/native/kernels.cpp $(STAMP_RUN)
	if $(PY) -m sat2sound_core.accel.native --strict; then touch $@; fi

install: $(STAMP_RUN) $(STAMP_ASSETS) $(STAMP_NATIVE)
install-dev: $(STAMP_APT) install $(STAMP_DEV)
apt: $(STAMP_APT)
assets: $(STAMP_ASSETS)

run: install
	$(VENV)/bin/streamlit run app/main.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(PY) -m bench $(BENCH_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache app/static/vendor
