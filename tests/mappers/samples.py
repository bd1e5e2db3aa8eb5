"""The shared HL7 v2 sample messages (``../shared/data/hl7v2``, sources cited in its README.txt)."""

from __future__ import annotations

from mappers.v2 import Message, decode, parse
from tests.shared_data import SHARED, shared


def sample_files(folder: str = "") -> list[str]:
    """The names of the sample messages in ``folder`` (none when the shared data is absent)."""
    root = SHARED / "hl7v2" / folder
    return sorted(path.name for path in root.glob("*.hl7")) if root.exists() else []


def sample(name: str) -> Message:
    """The parsed sample message ``name`` (skips when the shared data is absent)."""
    return parse(decode(shared("hl7v2", name).read_bytes()))
