# Edge Inspector: `make demo` runs the product end to end, `make test` runs the tests.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= calibration/pcb-synth
DEMO_RUN ?= runs/demo

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-train synth --out $(DEMO_DATA) --per-class 100 --size 96 --seed 0
	$(BIN)/edge-train fit --data $(DEMO_DATA) --out $(DEMO_RUN) --weights none --image-size 96 \
		--epochs 15 --batch-size 16 --lr 1e-3 --patience 15 --seed 0
	@echo "open $(DEMO_RUN)/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(DEMO_DATA) $(DEMO_RUN)
