# Two commands do all the set-up on a fresh machine: `make up` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: install up test lint unit bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# One pip command for everything: botocore pins (aiobotocore, boto3, awscli) must be resolved together.
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/pipecache up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	MYPY=$(abspath $(BIN))/mypy .ci/typecheck

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(ARGS)

# Benchmarks are scripts, not tests: they need root (apt-get for nginx and wrk; a network
# namespace and tc for the far-away S3) and write bench/results/.
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python bench/hits.py $(ARGS)
	$(BIN)/python bench/faraway.py
	$(BIN)/python bench/eviction.py
	$(BIN)/python bench/master_scale.py
	$(BIN)/python bench/profile.py
	$(BIN)/python bench/report.py

# Ten minutes of verified reads and writes with a worker killed midway (the suite runs 20 s of it).
soak: $(STAMP)
	$(BIN)/python tests/soak.py $(ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit $(ARGS)

clean:
	rm -rf $(VENV) .pipecache build *.egg-info
