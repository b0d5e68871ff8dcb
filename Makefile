# Two commands on a fresh machine: `make demo` (the main job on generated data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test benchmark install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m eval_encoder demo --out .demo --nproc_per_node 2

test: $(VENV)/.installed
	$(PY) -m pytest -q

benchmark: $(VENV)/.installed
	$(PY) benchmarks/bench_codec.py

clean:
	rm -rf .demo fewshot_video_report
