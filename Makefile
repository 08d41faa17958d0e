# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs reidbench, runs the default benchmark (runs/demo/report.pdf)
#   make test   creates .venv, installs reidbench with its test tools, runs the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install demo test regress lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,torchreid,fastreid]'
	# fastreid 1.4.0 on PyPI pins torch==1.13.1; its code runs on today's torch, so it goes in without its pins
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps fastreid
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/reidbench run --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The robustness regression check of the shipped models against the golden file (CI runs it).
regress: $(STAMP)
	$(BIN)/reidbench run --out runs/regress --fresh --quiet --no-report
	$(BIN)/reidbench check runs/regress --baseline reidbench/golden/embedded-default.json --junit runs/regress/junit.xml

lint: $(STAMP)
	$(BIN)/ruff check reidbench tests benchmarks

# Each benchmark prints reidbench against its reference in one run: evaluation and re-ranking
# (torchreid's Cython evaluator, compiled when Cython is installed, else skipped with a message;
# the naive re-ranking), the attacks (the papers' per-image loops and the previous release, with
# FLOP/s against a matmul peak), the default run's cells against the previous release, batch
# size and threads against reidbench's defaults, and MSMT17-sized memory (the full distance
# matrix). Each prints its machine's load: ratios from one run count, times do not.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_eval.py
	$(BIN)/python benchmarks/bench_attacks.py
	$(BIN)/python benchmarks/bench_release.py
	$(BIN)/python benchmarks/bench_cpu_settings.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_rerank.py

clean:
	rm -rf $(VENV) runs
