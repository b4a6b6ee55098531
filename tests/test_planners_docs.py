"""The examples in docs/planners.md run (one namespace, top to bottom)."""

from __future__ import annotations

import os

import pytest
from doc_examples import run_python_blocks


@pytest.mark.slow  # compiles a MuZero and a PPO run: too long for the default suite
def test_planners_doc_examples_run(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the MuZero example writes runs/muzero-demo
    try:
        run_python_blocks("planners.md", min_blocks=5)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "runs" / "muzero-demo" / "metrics.jsonl").exists()
