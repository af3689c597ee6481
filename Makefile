# Edge Inspector: `make demo` runs the product end to end, `make test` runs the tests.
# Both create the virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATA ?= calibration/pcb-synth
DEMO_RUN ?= runs/demo
DEMO_BUNDLE ?= bundle/demo
DEMO_SIZE ?= 96
DEMO_MINUTES ?= 7
# a run of minutes on balanced synthetic classes: cross entropy (focal loss, the default, is for a line's
# imbalanced classes), a higher rate in batches of 16 with a short warm-up, no dropout, a weight average
# that follows closely, a stronger pull of each defect's heatmap into its box and every heatmap cell classified
# on its own (bench/README.md has the runs); the first half's epochs are not validated, so their minutes train
DEMO_RECIPE ?= --loss ce --lr 6e-3 --batch-size 16 --warmup-epochs 0.3 --dropout 0 --ema-half-life 0.2 --box-guidance 0.5 \
	--cell-guidance 1.0 --validate-from 0.5
DEMO_FIT_FLAGS ?=

.PHONY: install system-deps test-deps demo test lint clean proto

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[train,openvino,dev]'
	touch $(STAMP)

# the agent as a box runs it: no torch, no training stack
EDGE_VENV ?= .venv-edge
EDGE_STAMP := $(EDGE_VENV)/.installed
$(EDGE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install --quiet --upgrade pip
	$(EDGE_VENV)/bin/pip install --quiet -e '.[openvino,dev]'
	# the Sparkplug test decodes with an independent implementation; pysparkplug pins paho-mqtt < 2 for its
	# client, which the test does not use, so it comes without its dependencies
	$(EDGE_VENV)/bin/pip install --quiet --no-deps 'pysparkplug==0.6.1'
	touch $(EDGE_STAMP)

install: $(STAMP)

# the demo and the tests run a real local Mosquitto broker
system-deps:
	@if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
		else echo "mosquitto is missing: sudo apt-get install mosquitto"; exit 1; fi; \
	fi

# every system package a test needs: Chromium and its driver for the live view, curl for POST /inspect, openssl
# for the TLS certificates, shellcheck for the installer, systemd for systemd-analyze on the unit; as root they
# are installed, otherwise the tests that need them skip
TEST_PACKAGES := chromium chromium-driver curl openssl shellcheck systemd
test-deps: system-deps
	@missing=""; for pkg in $(TEST_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "note: missing$$missing (sudo apt-get install$$missing); the tests that need them skip"; fi; \
	fi

demo: $(STAMP) system-deps
	$(BIN)/edge-train synth --out $(DEMO_DATA) --per-class 150 --size $(DEMO_SIZE) --seed 0
	# ImageNet weights when the torch hub cache has them or they can be downloaded; from scratch otherwise.
	# Training stops at DEMO_MINUTES whatever the machine: a slower one takes fewer steps.
	weights=imagenet; $(BIN)/edge-train fetch-weights || { weights=none; \
		echo "note: no ImageNet weights (see the line above): the demo model trains from scratch"; }; \
	$(BIN)/edge-train fit --data $(DEMO_DATA) --out $(DEMO_RUN) --weights $$weights --image-size $(DEMO_SIZE) \
		--time-budget-min $(DEMO_MINUTES) --epochs 40 --patience 40 --seed 0 $(DEMO_RECIPE) $(DEMO_FIT_FLAGS)
	$(BIN)/edge-deploy export --run $(DEMO_RUN) --out $(DEMO_BUNDLE) --name pcb-demo
	$(BIN)/edge-deploy quantize --bundle $(DEMO_BUNDLE) --calibration $(DEMO_DATA)
	$(BIN)/edge-deploy check-tensorrt --bundle $(DEMO_BUNDLE)
	$(BIN)/edge-deploy verify --bundle $(DEMO_BUNDLE) --threads 2
	$(BIN)/python -m examples.demo --bundle $(DEMO_BUNDLE) --out demo
	@echo "training report: $(DEMO_RUN)/report.html   heatmaps: demo/heatmaps/"

# the agent's tests in the box's venv (which proves they need no torch), the rest with the training stack;
# both halves run whatever the first gives, and the target fails if either failed
test: $(STAMP) $(EDGE_STAMP) test-deps
	@status=0; \
	$(EDGE_VENV)/bin/python -m pytest tests/edge_inspector || status=1; \
	$(BIN)/python -m pytest --ignore=tests/edge_inspector || status=1; \
	if [ $$status != 0 ]; then echo "make test: a half of the suite failed (see above)"; fi; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(DEMO_DATA) $(DEMO_RUN) $(DEMO_BUNDLE) demo

# the Sparkplug B payload classes, from edge_inspector/outbox/sparkplug/sparkplug_b.proto (protoc 31 = protobuf 6.31 gencode,
# the oldest runtime the package accepts); the result is committed
proto:
	$(PYTHON) -m venv /tmp/edge-inspector-protoc
	/tmp/edge-inspector-protoc/bin/pip install --quiet "grpcio-tools==1.74.0"
	/tmp/edge-inspector-protoc/bin/python -m grpc_tools.protoc -I. --python_out=. edge_inspector/outbox/sparkplug/sparkplug_b.proto
