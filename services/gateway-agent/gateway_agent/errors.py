"""The gateway agent's errors."""

from __future__ import annotations

from bwvisu_common.errors import BwvisuError


class GatewayError(BwvisuError):
    """Base of the gateway agent's errors."""


class FirewallError(GatewayError):
    """iptables refused or failed a change; nothing of that batch was applied."""


class TrafficUnavailable(GatewayError):
    """The gateway's connection counters cannot be read (no conntrack): no activity is known."""
