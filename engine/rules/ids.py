"""Message ids that durable_rules cannot confuse.

durable_rules indexes a session's messages by the 32-bit FNV-1 hash of their id (the id
of a message without one is derived from a hash of its content), and compares only that
hash: a second, different fact whose id hashes alike is refused as "already observed".
With content ids this happens after some ten thousand facts (15,588 in our measurement,
docs/engine-rules.md). Every message we send carries an id whose hash no other message
of its session has had.
"""

from __future__ import annotations

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 16777619


def fnv1_32(text: str) -> int:
    """durable_rules' fnv1Hash32: FNV-1 over the UTF-8 bytes, each sign-extended (C char)."""
    h = FNV_OFFSET
    for byte in text.encode("utf-8"):
        if byte >= 0x80:
            byte |= 0xFFFFFF00
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return h


class IdAllocator:
    """Ids for the messages of one session, pairwise distinct in their 32-bit hash."""

    def __init__(self, sid: str):
        self._used: set[int] = {fnv1_32(sid), fnv1_32(f"sid-{sid}")}  # the session's own state
        self._next = 0

    def new(self, prefix: str) -> str:
        while True:
            self._next += 1
            candidate = f"{prefix}{self._next}"
            h = fnv1_32(candidate)
            if h not in self._used:
                self._used.add(h)
                return candidate
