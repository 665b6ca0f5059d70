# The two commands of the README, and a few more.
#   make agc    set up (first time) and run the AGC workflow on the generated default data
#   make htautau  the same for the CMS Open Data H->tautau workflow
#   make test   set up (first time) and run the linters and the test suite
# Set-up is a virtual environment in .venv with the locked versions of everything.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCK   := environment/requirements.lock
CORES  ?= all
# Test processes (pytest-xdist): the tests of one file run in one of them.
TEST_PROCESSES ?= 2

.PHONY: agc htautau test lint docs benchmarks clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[all]'
	touch $@

agc: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH snakemake --profile profiles/local --cores $(CORES)
	PATH=$(CURDIR)/$(BIN):$$PATH snakemake --profile profiles/local --report results/report.html
	@echo "Results: results/ (histograms.root, fit/, plots/, hepdata/, report.html)"

htautau: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH snakemake -s workflow/htautau/Snakefile --profile profiles/local --cores $(CORES)
	PATH=$(CURDIR)/$(BIN):$$PATH snakemake -s workflow/htautau/Snakefile --profile profiles/local --report results-htautau/report.html
	@echo "Results: results-htautau/ (qcd.root, plots/, htautau/*/histograms.root and plots/, report.html)"

lint: $(STAMP)
	$(BIN)/ruff check swift_rules snakemake_executor_plugin_dirac tests benchmarks docs/hooks.py
	$(BIN)/ruff format --check swift_rules snakemake_executor_plugin_dirac tests benchmarks docs/hooks.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

test: lint docs
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile

benchmarks: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf results results-htautau .snakemake build data/generated data/generated-htautau
