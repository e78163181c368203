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
# Run as root, `make run` installs as root (apt, venv) but runs the service as the unprivileged
# system user $(SERVICE_USER) (created when missing; it owns the data dir, files 0600, folders 0700):
# nothing of the service needs root once installed (SIP 5060 and HTTP 8000 are unprivileged ports).
# SERVICE_USER=root keeps the old behaviour (everything as root), knowingly.
SERVICE_USER ?= hotline
run: install
	@set -e; umask 077; \
	as=""; \
	if [ "$$(id -u)" = 0 ] && [ "$(SERVICE_USER)" = root ]; then \
	  echo "make run: WARNING: the service runs as root (SERVICE_USER=root)" >&2; \
	elif [ "$$(id -u)" = 0 ]; then \
	  data_dir="$$($(BIN)/python -c 'from hotline_api.core.config import get_settings as g; print(g().data_dir.resolve())')"; \
	  anchor="$$($(BIN)/python -c 'from hotline_api.core.config import get_settings as g; print(g().audit_anchor_file)')"; \
	  if ! id -u $(SERVICE_USER) >/dev/null 2>&1; then \
	    echo "Creating the system user $(SERVICE_USER) (the service runs as it, not as root)"; \
	    useradd --system --user-group --home-dir "$$data_dir" --no-create-home --shell /usr/sbin/nologin $(SERVICE_USER); \
	  fi; \
	  install -d -m 0700 -o $(SERVICE_USER) -g $(SERVICE_USER) "$$data_dir"; \
	  chown -R $(SERVICE_USER):$(SERVICE_USER) "$$data_dir"; \
	  chmod -R go-rwx "$$data_dir"; \
	  if [ -n "$$anchor" ]; then \
	    mkdir -p "$$(dirname "$$anchor")"; touch "$$anchor"; \
	    chown $(SERVICE_USER):$(SERVICE_USER) "$$anchor"; chmod 0600 "$$anchor"; \
	  fi; \
	  as="runuser -u $(SERVICE_USER) --"; \
	  if ! $$as $(BIN)/python -c 'import hotline_api' >/dev/null 2>&1 || ! $$as test -w "$$data_dir"; then \
	    echo "make run: the user $(SERVICE_USER) cannot run $(CURDIR)/$(BIN)/python" \
	         "($$(readlink -f $(BIN)/python)) or write $$data_dir: a folder on the way is not open to it" \
	         "(e.g. a Python under /root). Rebuild the venv with a system Python" \
	         "(make clean && make run PYTHON=/usr/bin/python3), move the checkout, or run as root knowingly" \
	         "(make run SERVICE_USER=root)." >&2; \
	    exit 1; \
	  fi; \
	fi; \
	$$as $(BIN)/hotline keys init; \
	$$as $(BIN)/hotline db upgrade; \
	$$as $(BIN)/hotline prompts build; \
	$$as $(BIN)/hotline users bootstrap-admin --if-missing; \
	exec $$as $(BIN)/hotline serve

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 --junitxml=test-output/junit.xml $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not sip and not vosk and not browser and not slow" $(PYTEST_ARGS)

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) test-output .pytest_cache
