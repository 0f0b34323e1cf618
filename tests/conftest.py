"""Shared test helpers: external tools are required in CI (EMU_REQUIRE_TOOLS=1), optional elsewhere."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware" / "build"
FIXTURES = ROOT / "fixtures"


def require_tool(*names: str) -> None:
    """Skip the calling test when a tool is missing; fail instead when CI requires tools."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    message = f"needs {', '.join(missing)} (not installed)"
    if os.environ.get("EMU_REQUIRE_TOOLS") == "1":
        pytest.fail(message + " but EMU_REQUIRE_TOOLS=1", pytrace=False)
    pytest.skip(message)
