# Two commands do all set-up on a fresh machine (Python >= 3.11 and git):
#   make demo   - create .venv, install ibin, build a database from the shipped scans, search it
#   make test   - create .venv, install ibin with its test tools, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("ibin needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ibin demo --fresh

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.fadul_accuracy
	$(BIN)/python -m benchmarks.pair_speed
	$(BIN)/python -m benchmarks.hamby44

clean:
	rm -rf $(VENV) demo-db .pytest_cache
