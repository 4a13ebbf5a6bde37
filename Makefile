# The README's two commands: `make demo` brings the whole system up on the minicluster,
# `make test` runs every test (unit, contract, integration, e2e on the minicluster).
# Both need root: `install` takes the Debian packages the minicluster and the tests use
# (Slurm, sshd, iptables, xpra, …) before the venv.

VENV      ?= .venv
PY        := $(VENV)/bin/python
CLUSTER   := deploy/minicluster/minicluster
CLUSTER_CONFIG := /var/lib/bwvisu-minicluster/bwvisu.json

.PHONY: demo test install test-fast bench bench-cluster lint down clean

$(VENV)/.installed: pyproject.toml
	$(CLUSTER) packages
	@# Debian's chromium for the browser tests (Playwright's own browser download does not work here).
	[ -x /usr/bin/chromium ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(CLUSTER) up
	@echo
	@echo "Portal: http://127.0.0.1:8080/  (log in as alice, password: $$(python3 -c 'import json; print(json.load(open("/var/lib/bwvisu-minicluster/users.json"))["alice"])'))"
	@echo
	$(VENV)/bin/bwvisu --config $(CLUSTER_CONFIG) up

test: install
	$(PY) -m pytest -ra

test-fast: install
	$(PY) -m pytest -ra -m "not e2e"

bench: install
	$(PY) -m bench.events
	$(PY) -m bench.scheduler
	$(PY) -m bench.gateway
	$(PY) -m bench.retention

bench-cluster: install
	$(CLUSTER) up
	$(PY) -m bench.submit
	$(PY) -m bench.ready

lint: install
	$(VENV)/bin/ruff check libs services tests bench
	$(VENV)/bin/mypy

down:
	$(CLUSTER) down

clean: down
	rm -rf $(VENV) .bwvisu
