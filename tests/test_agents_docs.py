"""The examples in docs/agents.md run, top to bottom in one namespace (they also test the
oracle and random controls: the contract suite in test_agents.py does not repeat them)."""

from __future__ import annotations

import os

import pytest
from doc_examples import run_python_blocks


@pytest.mark.slow  # trains an agent and compiles the oracle's search: about a minute
def test_agents_doc_examples_run(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the examples write runs/agents-demo
    try:
        namespace = run_python_blocks("agents.md", min_blocks=5)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "runs" / "agents-demo" / "checkpoint.eqx").exists()
    trained, random, oracle = namespace["trained"], namespace["random"], namespace["oracle"]
    assert trained.returns.shape == random.returns.shape == oracle.returns.shape == (2, 64)
    # the controls bracket the comparison: the true-dynamics planner beats random play,
    # and no policy earns more than the env's optimal bound
    assert oracle.summary()["return"]["mean"] > random.summary()["return"]["mean"] + 0.5
    for ev in (trained, random, oracle):
        assert (ev.returns <= ev.optimal + 1e-5).all()
    assert namespace["traj"].action.shape == (20, 4)
