"""The chaos suite (issue: proof of reliability): every test under tests/chaos is marked `chaos`, which the
default run leaves out; `pytest -m chaos` runs the suite on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.chaos)
