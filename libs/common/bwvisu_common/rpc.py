"""Requests between services over core NATS (not events: they change nothing)."""

from __future__ import annotations

import msgspec

CHECK_USER = "bwvisu.rpc.check-user"


class CheckUser(msgspec.Struct, frozen=True, kw_only=True):
    uid: str


class CheckUserReply(msgspec.Struct, frozen=True, kw_only=True):
    """`exists` is only meaningful when `error` is empty; an error means nobody could ask Slurm."""

    exists: bool = False
    error: str = ""
