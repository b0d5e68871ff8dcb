# Two commands on a fresh machine: `make demo` (the main job on generated data) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# the [test] install (no DALI) as a view of $(VENV): links, no second download (.ci/light_venv.py)
LIGHT := $(VENV)/light

.PHONY: demo test test-light benchmark gpu-check install clean

# [test-dali]: the test tools and DALI, so that `make test` checks DALI/torch parity
$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test-dali]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m eval_encoder demo --out .demo --nproc_per_node 2
	$(PY) -m eval_encoder report --runs .demo/report/runs --out .demo/site

# DALI is required here: its parity tests fail rather than skip when it cannot be imported
test: $(VENV)/.installed
	EVAL_ENCODER_REQUIRE_DALI=1 $(PY) -m pytest -q -rs

# what `pip install -e '.[test]'` gives (no DALI): every module imports, the wheel installs and
# runs the demo, the DALI tests skip and say why (the whole suite passes there too, but takes
# as long as `make test` again)
test-light: $(VENV)/.installed
	$(PY) .ci/light_venv.py $(LIGHT)
	$(LIGHT)/bin/python -m pytest -q -rs tests/test_packaging.py tests/test_dali.py

benchmark: $(VENV)/.installed
	$(PY) benchmarks/bench_codec.py
	$(PY) benchmarks/bench_codec_pixels.py --clock cpu
	$(PY) benchmarks/bench_loader.py
	$(PY) benchmarks/bench_heads.py --ways bank
	$(PY) benchmarks/bench_head_kinds.py
	$(PY) benchmarks/bench_throughput.py --loader_workers 0 1 2

gpu-check: $(VENV)/.installed
	PYTHON=$(PY) bash benchmarks/gpu_check.sh

clean:
	rm -rf .demo fewshot_video_report $(LIGHT)
