"""Which gateway and which ports: least loaded live gateway first, free ports at random."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from bwvisu_common.events import Forward
from bwvisu_common.state_keys import gateway_ports, host_of, node_port_key, port_key, port_of


@dataclass(frozen=True)
class Reservation:
    """What one assignment reserves: forwards on one gateway, and the keys that hold them."""

    gateway: str
    forwards: list[Forward]
    keys: list[str]


@dataclass
class Avoid:
    """What earlier assignments of one request showed not to work: left out of the next pick."""

    gateways: set[str] = field(default_factory=set)
    external: set[tuple[str, int]] = field(default_factory=set)
    internal: set[int] = field(default_factory=set)

    def ports_of(self, reservation: Reservation) -> None:
        """Its ports were in use on the gateway or the nodes."""
        self.external |= {(reservation.gateway, f.external_port) for f in reservation.forwards}
        self.internal |= {f.internal_port for f in reservation.forwards}


def candidate_gateways(alive: Collection[str], known: Collection[str], avoid: Avoid,
                       held: Mapping[str, str]) -> list[str]:
    """Live, configured gateways not to avoid, least loaded first (`held`: gateway ports -> owner)."""
    load = Counter(host_of(key) for key in held)
    return gateway_order([g for g in alive if g in known and g not in avoid.gateways], load)


def pick_reservation(gateway: str, count: int, nodes: Collection[str], *, held: Mapping[str, str],
                     node_held: Mapping[str, str], avoid: Avoid, port_range: tuple[int, int],
                     static: bool, rng: random.Random | None = None) -> Reservation | None:
    """`count` free forwards on `gateway` whose internal ports are free on every one of `nodes`,
    with the keys that reserve them; None if the gateway's range is too full.

    `held` and `node_held` are the gateway ports and node ports held now (key -> owner).
    """
    taken_external = {port_of(k) for k in held if k.startswith(gateway_ports(gateway))}
    taken_external |= {p for g, p in avoid.external if g == gateway}
    taken_internal = set(avoid.internal) | {port_of(k) for k in node_held if host_of(k) in nodes}
    forwards = pick_forwards(count, port_range, taken_external=taken_external,
                             taken_internal=taken_internal, static=static, rng=rng)
    if forwards is None:
        return None
    keys = [port_key(gateway, f.external_port) for f in forwards]
    keys += [node_port_key(n, f.internal_port) for n in nodes for f in forwards]
    return Reservation(gateway, forwards, keys)


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
    # Sets made once: with thousands of forwards held, a set per port tried costs seconds.
    taken_external, taken_internal = set(taken_external), set(taken_internal)
    externals = [p for p in range(lo, hi + 1) if p not in taken_external]
    if static:
        usable = [p for p in externals if p not in taken_internal]
        if len(usable) < count:
            return None
        return [Forward(internal_port=p, external_port=p) for p in rng.sample(usable, count)]
    internals = [p for p in range(lo, hi + 1) if p not in taken_internal]
    if len(externals) < count or len(internals) < count:
        return None
    return [Forward(internal_port=i, external_port=e)
            for i, e in zip(rng.sample(internals, count), rng.sample(externals, count), strict=True)]
