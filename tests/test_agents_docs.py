"""The examples in docs/agents.md run, top to bottom in one namespace."""

from __future__ import annotations

import os
import pathlib
import re

DOC = pathlib.Path(__file__).parent.parent / "docs" / "agents.md"


def test_agents_doc_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the examples write runs/agents-demo
    try:
        namespace: dict = {}
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "runs" / "agents-demo" / "checkpoint.eqx").exists()
    trained, random = namespace["trained"], namespace["random"]
    assert trained.returns.shape == random.returns.shape == (2, 64)
    assert namespace["traj"].action.shape == (20, 4)
