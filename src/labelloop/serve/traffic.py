"""Which model answers a request: the A/B split between the champion and the challenger.

Pure: no I/O, no state. The split is sticky: a key (a user id, a session, an entity id) always
lands on the same side for a given share, because the side is a stable hash of the key, not a
draw. A request without a key gets a random one, so keyless traffic splits at the share on
average but not stickily.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

Variant = Literal["champion", "challenger"]
_SCALE = float(2**64)


def bucket(key: str) -> float:
    """The key's place in [0, 1): the first 8 bytes of its BLAKE2b hash. Stable across
    processes and machines (unlike ``hash()``, which is salted per process)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def choose_variant(key: str | None, challenger_share: float) -> Variant:
    """``"challenger"`` for a ``challenger_share`` of keys, ``"champion"`` for the others."""
    if not 0.0 <= challenger_share <= 1.0:
        raise ValueError(
            f"challenger_share is a share of traffic in [0, 1], not {challenger_share}"
        )
    if challenger_share <= 0.0:
        return "champion"
    if challenger_share >= 1.0:
        return "challenger"
    if key is None:
        key = secrets.token_hex(8)
    return "challenger" if bucket(key) < challenger_share else "champion"
