# Two commands matter: `make demo` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE ?= $(HOME)/.cache/jupyterhub-mcp

.PHONY: demo test unit lint controlplane tools venv node browser bench clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

node: node_modules/.installed
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# etcd, kube-apiserver, kube-controller-manager, kwok built from Go modules at pinned versions,
# plus kubectl and helm; cached under $(CACHE), keyed by version.
controlplane:
	bash tests/controlplane/build.sh

# Debian's chromium for the MCP authorization tests (Playwright drives it through executable_path;
# Playwright's own browser download is never used).
browser:
	command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

tools: venv node controlplane browser

demo: venv node
	$(BIN)/jupyterhub-mcp demo

# Type-checked code: all four programs (the tests are not yet).
MYPY_PATHS ?= sidecar/mcp_sidecar operator/mcp_operator local/mcp_local authserver/mcp_authserver

test: tools
	$(BIN)/ruff check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest -q -ra tests/unit

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)

bench: tools
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .demo
