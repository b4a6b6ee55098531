"""The how-to guides run: every ```python block of each, top to bottom, in one namespace.

Each guide runs in its own Python process, as a reader would run it, so what it
registers (docs/howto_environment.md adds ``Corridor-v0`` to innerlab's and
gymnasium's registries) cannot leak into the rest of the test session.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from doc_examples import python_blocks

DOCS = pathlib.Path(__file__).parent.parent / "docs"

RUNNER = """
import pathlib, re, sys
doc = pathlib.Path(sys.argv[1])
namespace = {}
for block in re.findall(r"```python\\n(.*?)```", doc.read_text(), re.S):
    exec(compile(block, str(doc), "exec"), namespace)
print("ran", doc.name)
"""


@pytest.mark.parametrize(("name", "min_blocks"), [
    ("howto_environment.md", 5),
    # fits, searches and retrains a reward model: about a minute, so with the slow tests
    pytest.param("howto_reward_model.md", 5, marks=pytest.mark.slow),
])
def test_howto_runs(name, min_blocks):
    assert len(python_blocks(name)) >= min_blocks
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(DOCS / name)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert f"ran {name}" in proc.stdout


def test_howtos_are_in_the_readme_docs_table():
    readme = (DOCS.parent / "README.md").read_text()
    for name in ("howto_environment.md", "howto_reward_model.md"):
        assert f"[docs/{name}](docs/{name})" in readme
