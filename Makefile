# Two commands a person needs: `make demo` and `make test`. Both bootstrap what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Debian packages the suite and the benchmarks run for real: Redis shards, redis-benchmark, twemproxy,
# and headless Chromium with its WebDriver for the simulator's browser test.
DEBIAN_PACKAGES := redis-server redis-tools nutcracker chromium chromium-driver

.PHONY: demo test lint typecheck pytest bench system-packages demo-packages control-plane clean

# The sidecar's C extension is built by the install, so a change to it reinstalls too.
$(STAMP): pyproject.toml $(wildcard sidecar-image/cachefleet/sidecar/*.c sidecar-image/cachefleet/sidecar/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[operator,dev,sim]'
	touch $(STAMP)

system-packages:
	@if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && command -v nutcracker >/dev/null \
		&& command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		:; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing $(DEBIAN_PACKAGES) from Debian"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DEBIAN_PACKAGES); \
	else \
		echo "cachefleet needs $(DEBIAN_PACKAGES); run: sudo apt-get install -y $(DEBIAN_PACKAGES)"; exit 1; \
	fi

# What `make demo` runs for real: redis-server (the demo's shards and gutter).
demo-packages:
	@if command -v redis-server >/dev/null; then \
		:; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing redis-server from Debian"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; \
	else \
		echo "the demo needs redis-server; run: sudo apt-get install -y redis-server"; exit 1; \
	fi

# The product doing its job on this machine, about a minute and a half: see `cachefleet demo`.
demo: $(STAMP) demo-packages
	$(BIN)/cachefleet demo

lint: $(STAMP)
	$(BIN)/ruff check sidecar-image operator tests bench
	$(BIN)/ruff format --check sidecar-image operator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy sidecar-image/cachefleet operator/cachefleet_operator

# The e2e tests' Kubernetes API, unless KUBECONFIG names one: kube-apiserver and
# kube-controller-manager built once per machine from Debian's source package (about 5 minutes,
# cached in /var/cache/cachefleet/kube), here rather than inside a test with a timeout.
control-plane:
	@if [ -z "$$KUBECONFIG" ]; then tests/e2e/kube/build-control-plane.sh; fi

# Everything, then the sidecar's suites again on its pure-Python path (the reference the C
# extension must equal): CACHEFLEET_PURE_PYTHON=1 reaches the sidecar processes they start.
# (`up` and the demo are tested once: their command line and processes, not the request path.)
PURE_PYTHON_SUITES := tests/integration tests/sidecar \
	--ignore=tests/sidecar/test_speedups.py --ignore=tests/sidecar/test_speedups_built.py \
	--ignore=tests/integration/test_up_and_demo.py

pytest: $(STAMP) system-packages control-plane
	$(BIN)/pytest -q
	CACHEFLEET_PURE_PYTHON=1 $(BIN)/pytest -q $(PURE_PYTHON_SUITES)

test: lint typecheck pytest

# Each benchmark prints one JSON line and a one-line summary; see README "Figures".
bench: $(STAMP) system-packages
	$(BIN)/python bench/ring.py
	$(BIN)/python bench/sidecar.py
	$(BIN)/python bench/client.py
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/warmup.py
	$(BIN)/python bench/operator.py
	$(BIN)/python bench/hotkeys.py
	$(BIN)/python bench/hotkeys_celebrity.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
