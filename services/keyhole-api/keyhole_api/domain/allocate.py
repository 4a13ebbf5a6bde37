"""Which gateway and which ports: least loaded live gateway first, free ports at random."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping

from bwvisu_common.events import Forward


def gateway_order(alive: Collection[str], load: Mapping[str, int]) -> list[str]:
    """Live gateways, least loaded first (ties by name)."""
    return sorted(alive, key=lambda g: (load.get(g, 0), g))


def pick_forwards(count: int, port_range: tuple[int, int], *, taken_external: Collection[int],
                  taken_internal: Collection[int], static: bool,
                  rng: random.Random | None = None) -> list[Forward] | None:
    """`count` forwards with ports in the range, none taken; None if the range is too full.

    Random picks, so that concurrent requests rarely collide on the same reservation.
    With static forwarding the internal port equals the external one (easy to debug).
    """
    rng = rng or random.SystemRandom()
    lo, hi = port_range
    externals = [p for p in range(lo, hi + 1) if p not in set(taken_external)]
    if static:
        usable = [p for p in externals if p not in set(taken_internal)]
        if len(usable) < count:
            return None
        return [Forward(internal_port=p, external_port=p) for p in rng.sample(usable, count)]
    internals = [p for p in range(lo, hi + 1) if p not in set(taken_internal)]
    if len(externals) < count or len(internals) < count:
        return None
    return [Forward(internal_port=i, external_port=e)
            for i, e in zip(rng.sample(internals, count), rng.sample(externals, count), strict=True)]
