# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines: the pinned CPU build installs from local disk in seconds. On a GPU machine run
# `make demo TORCH_SPEC=torch` to let pip pick the CUDA build.
TORCH_SPEC ?= torch==2.13.0

# The demo needs hplan alone; the tests (and benchmarks) add the dev, PostgreSQL and OGBench extras
# (~40 s more on a 2-core machine, so `make demo` does not wait for them).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-extras: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev,postgres,ogbench]"
	touch $@

.PHONY: install demo test bench clean
install: $(VENV)/.installed-extras

demo: $(VENV)/.installed
	$(BIN)/hplan demo

test: $(VENV)/.installed-extras
	$(BIN)/python -m pytest -q -n 2

bench: $(VENV)/.installed-extras
	$(BIN)/python benchmarks/bench_envs.py
	$(BIN)/python benchmarks/bench_planners.py
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) runs
