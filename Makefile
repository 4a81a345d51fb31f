# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
NODE_STAMP = node_modules/.installed-stamp
BUNDLE  = client_demo/dist/bundle.js
HOST   ?= 127.0.0.1
PORT   ?= 8080
PAGE_PORT ?= 8081

SHARED_BENCH ?= ../shared/bench
PAIRS  ?= 3

.PHONY: install run test demo bench bench-s3 system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(BUNDLE): $(NODE_STAMP) $(wildcard client_demo/src/*)
	npm run --silent build

install: $(STAMP)

# From Debian's packages: chromium for the browser tests (never a downloaded browser),
# jq for the tusd-style hook scripts in tests/hooks, redis-server for the shared-lock tests.
system-deps:
	@missing=""; for tool in chromium jq redis-server; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "missing:$$missing (install Debian's packages)"; exit 1; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

run: $(STAMP)
	$(BIN)/tusd-py -host $(HOST) -port $(PORT) -upload-dir ./data

# The Uppy drag-and-drop page on its own origin, next to the server.
demo: $(STAMP) $(BUNDLE)
	$(BIN)/python client_demo/demo.py --tus-port $(PORT) --page-port $(PAGE_PORT) --upload-dir ./data

test: $(STAMP) $(BUNDLE) system-deps
	$(BIN)/python -m pytest

# Five workloads against tusd-py (default flags) and @tus/server, alternating; see bench/README.md.
bench: $(STAMP)
	@test -x $(SHARED_BENCH)/compare.sh || { echo "the shared harness is not at $(SHARED_BENCH) (set SHARED_BENCH=...)"; exit 1; }
	$(SHARED_BENCH)/setup.sh
	$(SHARED_BENCH)/compare.sh -n $(PAIRS) -a tusd-py -o bench/results \
	  'exec $(BIN)/tusd-py -host 127.0.0.1 -port {port} -upload-dir {dir}'

# A 1 GiB upload in one PATCH and in 8 MiB PATCHes through the S3 store, against moto's S3 server.
bench-s3: $(STAMP)
	mkdir -p bench/results
	$(BIN)/python bench/s3.py --size-mib 1024 --rounds 3 | tee bench/results/s3.md

clean:
	rm -rf $(VENV) node_modules client_demo/dist .pytest_cache .hypothesis build *.egg-info
