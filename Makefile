# Two commands for a new machine: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(CURDIR)/var/data
MOUNT ?= $(CURDIR)/var/mnt

.PHONY: run test deps lint typecheck dist bench clean

$(STAMP): pyproject.toml packaging/install-system-deps.sh
	PYTHON=$(PYTHON) ./packaging/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

deps: $(STAMP)

run: $(STAMP)
	$(BIN)/hoodydb serve --data $(DATA) --mount $(MOUNT)

lint: $(STAMP)
	$(BIN)/ruff check hoodydb tests bench docs
	$(BIN)/ruff format --check hoodydb tests bench docs

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	HOODYDB_WITH_BENCH_DEPS=1 ./packaging/install-system-deps.sh
	$(BIN)/python -m bench

# Two one-file artifacts and their SHA-256 sums (packaging/build-dist.sh): dist/hoodydb.pyz, a
# zipapp needing Python 3.11 on the target (apsw ships compiled code), and dist/hoodydb, a
# PyInstaller binary with Python inside. Both need fuse3 from the system.
dist: $(STAMP)
	HOODYDB_VENV_BIN=$(abspath $(BIN)) ./packaging/build-dist.sh dist

clean:
	rm -rf $(VENV) dist build *.egg-info
