"""Where the shared real-world test data lives, and how tests that need it skip or fail.

The data is read in place from ``../shared/data`` (or ``FHIR_SHARED_DATA``), never copied. Outside CI a
missing folder skips the test with a reason; in CI (``CI=true``) it is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FHIR_SHARED_DATA", REPO.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def shared(*parts: str) -> Path:
    """The path of a shared data file or folder; skips (or fails in CI) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"shared test data not found at {path} (set FHIR_SHARED_DATA or check out ../shared)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
