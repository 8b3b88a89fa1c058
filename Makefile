# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test test-class venv test-venv bench populations clean

# runtime packages (requirements.txt, pinned): all `make run` needs; then the ewe package itself, editable
# (pyproject.toml: the `ewe` command; --no-deps: the pins above are what it runs with)
$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# plus the test tools (requirements-test.txt), for `make test` only; its own stamp so a change to either
# file reinstalls what it lists
$(BIN)/.installed-test: $(BIN)/.installed requirements-test.txt
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

venv: $(BIN)/.installed

test-venv: $(BIN)/.installed-test

run: venv
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: test-venv
	$(BIN)/python -m pytest -q tests

# the class on one server, short: three real browser sessions at once (tests/app/test_class_load.py)
test-class: test-venv
	$(BIN)/python -m pytest -q -m class_load tests/app/test_class_load.py

# where one quick run's time goes, on the built-in digits (no data download; the population ships with the package):
# one plain PyTorch epoch, then each stage of a digits quick run (train, the preset's thief, verdicts) in seconds and
# in plain epochs, the total and the peak memory (bench/bench_stages.py; docs/RESULTS.md §5 has MNIST's). Roughly a
# minute on 2 cores; prints numbers, its run folder is temporary. The other studies' commands: docs/RESULTS.md
bench: venv
	$(BIN)/python bench/bench_stages.py --dataset digits --preset quick --threads 2

# the default demo's innocent population shipped in the package (ewe/populations: digits, quick): fp32 training
# wherever it runs, from an empty cache of its own, so the files depend on the code and the data only
populations: venv
	set -e; cache=$$(mktemp -d); for p in quick; do \
	  EWE_CACHE_DIR=$$cache EWE_INNOCENTS_PRECISION=fp32 $(BIN)/python -m ewe nulls --dataset digits \
	    --preset $$p --threads 2 --ship ewe/populations; done; rm -rf $$cache

clean:
	rm -rf $(VENV) .pytest_cache
