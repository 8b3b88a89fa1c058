# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test venv test-venv bench clean

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

bench: venv
	EWE_DATA_DIR=$${EWE_DATA_DIR:-../shared/data} $(BIN)/python bench/bench_presets.py

clean:
	rm -rf $(VENV) .pytest_cache
