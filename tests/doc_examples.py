"""Running the ```python examples of a docs page, the way every docs test does."""

from __future__ import annotations

import pathlib
import re

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def python_blocks(page: str | pathlib.Path) -> list[str]:
    """The ```python blocks of ``page`` (a name under docs/ or a path), in order."""
    path = DOCS / page if isinstance(page, str) else page
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def run_python_blocks(page: str | pathlib.Path, min_blocks: int = 1,
                      namespace: dict | None = None) -> dict:
    """Execute every python block of ``page`` top to bottom in one namespace; return it.

    Fails if the page has fewer than ``min_blocks`` blocks (a renamed fence would
    otherwise make the test pass without running anything).
    """
    blocks = python_blocks(page)
    assert len(blocks) >= min_blocks, f"{page}: {len(blocks)} python blocks, want {min_blocks}+"
    namespace = {"__name__": "docs"} if namespace is None else namespace
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page}[{i}]", "exec"), namespace)
    return namespace
