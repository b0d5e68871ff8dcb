"""Shared fixtures."""
import importlib.util
import os
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _import_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def load_benchmark():
    """Import a script of benchmarks/ by name, and afterwards undo what the scripts do to a
    process: they pin OMP/MKL/OpenBLAS to one thread in os.environ (which later tests' child
    processes would inherit) and set torch's thread count."""
    env, threads = dict(os.environ), torch.get_num_threads()
    yield _import_benchmark
    os.environ.clear()
    os.environ.update(env)
    torch.set_num_threads(threads)
