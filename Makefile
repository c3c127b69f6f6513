# Two commands for a new machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(CURDIR)/var/data
MOUNT ?= $(CURDIR)/var/mnt
JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed

.PHONY: run test deps lint typecheck js-test screenshots dist bench clean

$(STAMP): pyproject.toml packaging/install-system-deps.sh
	PYTHON=$(PYTHON) ./packaging/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

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

test: $(STAMP) lint typecheck js-test
	$(BIN)/pytest

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
	rm -rf $(VENV) dist build *.egg-info $(JS)/node_modules $(JS)/types
