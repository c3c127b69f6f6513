# Two commands for a new machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(CURDIR)/var/data
MOUNT ?= $(CURDIR)/var/mnt
JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed

NODE_CLIENTS := tests/clients/node_modules/.package-lock.json
DISKCACHE_TESTS := $(VENV)/diskcache-tests/.unpacked

.PHONY: run test deps lint typecheck test-unit test-fuse test-http js-test screenshots dist bench clean

$(STAMP): pyproject.toml packaging/install-system-deps.sh
	PYTHON=$(PYTHON) ./packaging/install-system-deps.sh
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

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

run: $(STAMP)
	$(BIN)/hoodydb serve --data $(DATA) --mount $(MOUNT)

lint: $(STAMP)
	$(BIN)/ruff check hoodydb tests bench docs
	$(BIN)/ruff format --check hoodydb tests bench docs

typecheck: $(STAMP)
	$(BIN)/mypy

# The JavaScript client and the web console: tsc, then node --test against a real serve and mount.
js-test: $(STAMP) $(JS_STAMP)
	cd $(JS) && HOODYDB_PYTHON=$(CURDIR)/$(BIN)/python npm test

# The stages of `make test`, in order; each also runs alone (`make test-fuse`). tests/stages.py puts
# every pytest test in exactly one of unit, fuse and http, from the fixtures and processes it uses.
STAGES := lint typecheck test-unit test-fuse test-http js-test

# Lock core, SQL layer, CLI and docs: no /dev/fuse, no server.
test-unit: $(STAMP)
	$(BIN)/pytest -m "not fuse and not http"

# Real mounts driven by real clients (what the Node and diskcache targets install is for these).
test-fuse: $(STAMP) $(NODE_CLIENTS) $(DISKCACHE_TESTS)
	$(BIN)/pytest -m "fuse and not http"

# A real `hoodydb serve` on Hypercorn, with or without its mount.
test-http: $(STAMP)
	$(BIN)/pytest -m "http"

# The stages one after the other (never in parallel, even under -j); make stops at the first that
# fails, and its last line names it: `make: *** [Makefile:NN: test-fuse] Error 1`.
.NOTPARALLEL:
test: $(STAGES)

# Retake the console's screenshots in docs/ (the browser test takes them).
screenshots: $(STAMP) $(JS_STAMP)
	cd $(JS) && HOODYDB_PYTHON=$(CURDIR)/$(BIN)/python HOODYDB_SCREENSHOT_DIR=$(CURDIR)/docs \
		node --test test/console.test.js

bench: $(STAMP)
	HOODYDB_WITH_BENCH_DEPS=1 ./packaging/install-system-deps.sh
	$(BIN)/python -m bench

# Two one-file artifacts and their SHA-256 sums (packaging/build-dist.sh): dist/hoodydb.pyz, a
# zipapp needing Python 3.11 on the target (apsw ships compiled code), and dist/hoodydb, a
# PyInstaller binary with Python inside. Both need fuse3 from the system.
dist: $(STAMP)
	HOODYDB_VENV_BIN=$(abspath $(BIN)) ./packaging/build-dist.sh dist

clean:
	rm -rf $(VENV) dist build *.egg-info $(JS)/node_modules $(JS)/types tests/clients/node_modules
