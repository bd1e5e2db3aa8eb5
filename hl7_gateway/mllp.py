"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol): ``<VT> message <FS><CR>``.

An incremental reader: bytes arrive in any split; junk and NUL bytes between frames are skipped; a frame
larger than the limit is reported once (so the sender gets an answer) and the rest of it discarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"


def frame(message: bytes) -> bytes:
    """``message`` wrapped for MLLP."""
    return START_BLOCK + message + END_BLOCK


@dataclass(frozen=True)
class TooLarge:
    """A frame that passed the size limit; ``head`` is its first bytes (enough to read MSH for the ACK)."""

    head: bytes


@dataclass
class Deframer:
    """Splits a byte stream into MLLP frames."""

    max_bytes: int = 16 * 1024 * 1024
    _buffer: bytearray = field(default_factory=bytearray)
    _in_frame: bool = False
    _discarding: bool = False

    def feed(self, data: bytes) -> list[bytes | TooLarge]:
        """The complete frames (message bytes, or TooLarge) that ``data`` finishes."""
        self._buffer += data
        found: list[bytes | TooLarge] = []
        while True:
            if not self._in_frame and not self._seek_start():
                return found
            end = self._buffer.find(END_BLOCK)
            if end < 0:
                self._guard_size(found)
                return found
            message = bytes(self._buffer[:end])
            del self._buffer[: end + len(END_BLOCK)]
            self._in_frame = False
            if self._discarding:
                self._discarding = False
            else:
                found.append(message)

    def _seek_start(self) -> bool:
        """Drop junk up to the next start block; True when a frame has started."""
        start = self._buffer.find(START_BLOCK)
        if start < 0:
            self._buffer.clear()
            return False
        del self._buffer[: start + 1]
        self._in_frame = True
        return True

    def _guard_size(self, found: list[bytes | TooLarge]) -> None:
        """Report an oversize frame once, keep only a possible partial end block while discarding it."""
        if len(self._buffer) <= self.max_bytes:
            return
        if not self._discarding:
            found.append(TooLarge(bytes(self._buffer[:4096])))
            self._discarding = True
        del self._buffer[:-1]
