# One command for the main job, one for the tests; each sets itself up in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test bench mutate lint clean wheel-check

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sandbank demo --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/ruff check src tests bench examples tools
	$(BIN)/lint-imports
	# a worker per core, a file's tests together; the API fuzzer apart, in this process:
	# schemathesis gives its cases one node id, and xdist would run only one of the 26
	$(BIN)/python -m pytest -n auto --dist loadfile --ignore=tests/test_fuzz_api.py
	$(BIN)/python -m pytest tests/test_fuzz_api.py

# the package as a user gets it: build the wheel, install it (and only it) in a fresh venv
# outside the checkout, and run the main job there
wheel-check: $(STAMP)
	rm -rf dist
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist .
	d=$$(mktemp -d) && $(PY) -m venv $$d/venv && $$d/venv/bin/python -m pip install --quiet dist/sandbank-*.whl \
	  && cd $$d && venv/bin/sandbank --version && venv/bin/sandbank demo --out runs/demo \
	  && test -f runs/demo/report.html && test -f runs/demo/trades.parquet && echo "wheel-check: ok ($$d)"

# mutation testing of the core modules (docs/testing.md): about an hour on two cores
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py

bench: $(STAMP)
	$(BIN)/python bench/bench_kernel.py
	$(BIN)/python bench/bench_markets.py
	$(BIN)/python bench/bench_lab.py
	$(BIN)/python bench/bench_hosts.py
	$(BIN)/python bench/bench_collusion.py
	$(BIN)/python bench/bench_oversight.py
	$(BIN)/python bench/bench_digest.py
	$(BIN)/python bench/bench_server.py --kill
	$(BIN)/python bench/bench_memory.py  # last: exits 1 while memory grows with run length

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
