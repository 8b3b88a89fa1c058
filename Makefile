# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test venv bench clean

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: venv
	$(BIN)/python -m pytest -q tests

bench: venv
	EWE_DATA_DIR=$${EWE_DATA_DIR:-../shared/data} $(BIN)/python bench/bench_presets.py

clean:
	rm -rf $(VENV) .pytest_cache
