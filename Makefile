# The README's two commands: `make demo` brings the whole system up on the minicluster,
# `make test` runs every test (unit, contract, integration, e2e on the minicluster).
# Both need root: `install` takes the Debian packages the minicluster and the tests use
# (Slurm, sshd, iptables, xpra, …) before the venv.

VENV      ?= .venv
PY        := $(VENV)/bin/python
CLUSTER   := deploy/minicluster/minicluster
CLUSTER_STATE := /var/lib/bwvisu-minicluster
CLUSTER_CONFIG := $(CLUSTER_STATE)/bwvisu.json

.PHONY: demo demo-ha test chaos install test-fast bench bench-cluster lint down clean

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
	@echo "Admin:  http://127.0.0.1:8080/admin  (log in as admin, password: $$(python3 -c 'import json; print(json.load(open("/var/lib/bwvisu-minicluster/users.json"))["admin"])'))"
	@echo "Operator's view: $(VENV)/bin/bwvisu --config $(CLUSTER_CONFIG) jobs  (and: bwvisu job <id>)"
	@echo
	$(VENV)/bin/bwvisu --config $(CLUSTER_CONFIG) up

# Three middleware nodes (network namespaces mw0-mw2), each running a NATS server and an etcd
# member of one cluster and every service. mw0 starts first: it makes the shared credentials.
demo-ha: install
	$(CLUSTER) up --ha
	@echo
	@echo "Portals: http://10.200.0.40:8080/ http://10.200.0.41:8080/ http://10.200.0.42:8080/"
	@echo
	mkdir -p $(CLUSTER_STATE)/log
	ip netns exec mw0 $(VENV)/bin/bwvisu --config $(CLUSTER_STATE)/bwvisu-mw0.json up \
		> $(CLUSTER_STATE)/log/bwvisu-mw0.log 2>&1 & \
	until [ -s $(CLUSTER_STATE)/bwvisu-state/ha-credentials/tls/ca.crt ]; do sleep 0.2; done; \
	for n in mw1 mw2; do \
		ip netns exec $$n $(VENV)/bin/bwvisu --config $(CLUSTER_STATE)/bwvisu-$$n.json up \
			> $(CLUSTER_STATE)/log/bwvisu-$$n.log 2>&1 & \
	done; \
	echo "bwvisu runs on mw0-mw2 (logs in $(CLUSTER_STATE)/log/bwvisu-mwN.log); Ctrl-C stops it."; \
	wait

test: install
	$(PY) -m pytest -ra

chaos: install
	$(PY) -m pytest -ra -s tests/e2e/test_chaos.py

test-fast: install
	$(PY) -m pytest -ra -m "not e2e"

bench: install
	$(PY) -m bench.events
	$(PY) -m bench.scheduler
	$(PY) -m bench.gateway
	$(PY) -m bench.retention
	$(PY) -m bench.metrics
	$(PY) -m bench.scale
	$(PY) -m bench.submit_path

bench-cluster: install
	$(CLUSTER) up
	$(PY) -m bench.submit
	$(PY) -m bench.ready
	$(PY) -m bench.throughput
	$(PY) -m bench.peers

lint: install
	$(VENV)/bin/ruff check libs services tests bench
	$(VENV)/bin/mypy

down:
	$(CLUSTER) down

clean: down
	rm -rf $(VENV) .bwvisu
