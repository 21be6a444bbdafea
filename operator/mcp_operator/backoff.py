"""Backoff for every retry loop of the operator (wiring, hub client, token issue, revoke, release).

One rule: the n-th retry (0-based) waits `base * 2**n`, capped. Pure; the loops own their sleep.
"""

from __future__ import annotations

DEFAULT_CAP = 300.0


def backoff_delay(retry: int, base: float, cap: float = DEFAULT_CAP) -> float:
    """Seconds before the n-th retry (0-based): base, 2*base, 4*base, ... never above cap."""
    return min(cap, base * 2 ** min(retry, 16))
