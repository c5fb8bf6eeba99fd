"""A conservative estimate of how guessable a string is, for JWT secrets
(db/core/config.py) and passwords (db/auth/passwords.py)."""

from __future__ import annotations

import collections
import math
import zlib


def strength_bits(value: str) -> float:
    """Its characters' Shannon entropy times its length, discounted when it compresses
    (repeated runs such as "0123456789" * 4 or "abcabcabcabc")."""
    data = value.encode()
    if not data:
        return 0.0
    counts = collections.Counter(data)
    shannon = -sum(n / len(data) * math.log2(n / len(data)) for n in counts.values()) * len(data)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = len(packer.compress(data) + packer.flush())
    return shannon * min(1.0, packed / (0.75 * len(data)))
