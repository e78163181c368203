# Set-up and test entry points. `make run` and `make test` are the README's two commands.
# Everything the service and the tests need is installed from here, so a fresh machine works.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PKGS := sip-tester baresip kamailio espeak-ng sox chromium fonts-noto-cjk libsndfile1 ca-certificates
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install apt venv run test test-fast bench clean

install: apt venv

# Debian packages: installed only when one is missing (safe to run again).
apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "Need root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# kamailio's Debian service is not used: the service generates and runs its own instance.
	@systemctl disable --now kamailio >/dev/null 2>&1 || true

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# First start: keys (0600), schema, the default Mandarin prompts (espeak-ng, never downloaded) and
# the first admin with a printed one-time password; then the service.
run: install
	$(BIN)/hotline keys init
	$(BIN)/hotline db upgrade
	$(BIN)/hotline prompts build
	$(BIN)/hotline users bootstrap-admin --if-missing
	$(BIN)/hotline serve

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 --junitxml=test-output/junit.xml $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not sip and not vosk and not browser and not slow" $(PYTEST_ARGS)

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) test-output .pytest_cache
