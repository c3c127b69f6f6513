# Two commands for a new machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(CURDIR)/var/data
MOUNT ?= $(CURDIR)/var/mnt

NODE_CLIENTS := tests/clients/node_modules/.package-lock.json
DISKCACHE_TESTS := $(VENV)/diskcache-tests/.unpacked

.PHONY: run test deps lint typecheck dist bench clean

$(STAMP): pyproject.toml packaging/install-system-deps.sh
	./packaging/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The Node.js SQLite drivers tests/test_clients.py runs; both compile SQLite (a few minutes).
$(NODE_CLIENTS): tests/clients/package.json tests/clients/package-lock.json
	cd tests/clients && JOBS=max npm ci --no-audit --no-fund

# python-diskcache's own test suite (in its sdist, not its wheel), for tests/test_mount_unlinked.py.
$(DISKCACHE_TESTS): $(STAMP)
	rm -rf $(VENV)/diskcache-tests && mkdir -p $(VENV)/diskcache-tests
	$(BIN)/pip download -q --no-binary :all: --no-deps -d $(VENV)/diskcache-tests \
		"diskcache==$$($(BIN)/python -c 'import diskcache; print(diskcache.__version__)')"
	tar -xzf $(VENV)/diskcache-tests/diskcache-*.tar.gz -C $(VENV)/diskcache-tests
	touch $@

deps: $(STAMP)

run: $(STAMP)
	$(BIN)/hoodydb serve --data $(DATA) --mount $(MOUNT)

lint: $(STAMP)
	$(BIN)/ruff check hoodydb tests bench docs
	$(BIN)/ruff format --check hoodydb tests bench docs

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(NODE_CLIENTS) $(DISKCACHE_TESTS) lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	HOODYDB_WITH_BENCH_DEPS=1 ./packaging/install-system-deps.sh
	$(BIN)/python -m bench

# One self-contained file: a zipapp with every dependency (shiv); needs the same Python minor
# version on the target (apsw ships compiled code) and fuse3 from the system.
dist: $(STAMP)
	rm -rf dist && mkdir -p dist
	$(BIN)/shiv -q -c hoodydb -o dist/hoodydb.pyz -p '/usr/bin/env python3' --reproducible .
	@echo "built dist/hoodydb.pyz"

clean:
	rm -rf $(VENV) dist build *.egg-info tests/clients/node_modules
