# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint bench bench-train install clean

install: $(INSTALLED)

$(INSTALLED): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,lint,torch,fan3d,aws]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt face-alignment
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/voxmesh demo --output out/demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -rs tests

bench: $(INSTALLED)
	$(BIN)/python bench/bench_build.py

bench-train: $(INSTALLED)
	$(BIN)/python bench/bench_train.py

clean:
	rm -rf out build *.egg-info
