"""The examples in docs/agents.md run, top to bottom in one namespace."""

from __future__ import annotations

import os

from doc_examples import run_python_blocks


def test_agents_doc_examples_run(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the examples write runs/agents-demo
    try:
        namespace = run_python_blocks("agents.md", min_blocks=5)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "runs" / "agents-demo" / "checkpoint.eqx").exists()
    trained, random = namespace["trained"], namespace["random"]
    assert trained.returns.shape == random.returns.shape == (2, 64)
    assert namespace["traj"].action.shape == (20, 4)
