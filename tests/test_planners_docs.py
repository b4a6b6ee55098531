"""The examples in docs/planners.md run (one namespace, top to bottom)."""

from __future__ import annotations

import os
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).parent.parent / "docs" / "planners.md"


@pytest.mark.slow  # compiles a MuZero and a PPO run: too long for the default suite
def test_planners_doc_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the MuZero example writes runs/muzero-demo
    try:
        namespace: dict = {}
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert (tmp_path / "runs" / "muzero-demo" / "metrics.jsonl").exists()
