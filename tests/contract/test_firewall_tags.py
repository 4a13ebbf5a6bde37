"""Two bwvisus on one gateway (a test system beside another): real iptables in a throwaway netns."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from gateway_agent.adapters.iptables import IptablesFirewall
from gateway_agent.adapters.netns import throwaway_netns
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.errors import FirewallError

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables") is None,
    reason="needs root, ip and iptables")

GW = "10.9.0.30"  # the gateway's external address, which every DNAT matches
A = ForwardRule(job_id="joba", external_port=20001, target_ip="10.9.0.20",
                internal_port=21001, gateway_ip=GW)
B = ForwardRule(job_id="jobb", external_port=20002, target_ip="10.9.0.21",
                internal_port=21002, gateway_ip=GW)


@pytest.fixture
def two() -> Iterator[tuple[IptablesFirewall, IptablesFirewall]]:
    with throwaway_netns() as name:
        prefix = ["ip", "netns", "exec", name]
        yield IptablesFirewall(prefix=prefix), IptablesFirewall(prefix=prefix, tag="bwvtest1a2b3c:")


async def test_each_sees_and_removes_only_its_own(two: tuple[IptablesFirewall, IptablesFirewall]) -> None:
    real, test = two
    await real.ensure_chains()
    await test.ensure_chains()
    await real.install([A])
    await test.install([B])
    assert await real.rules() == [A] and await test.rules() == [B]
    # What a reconcile does with jobs its log does not know: removes them, but only its own.
    assert await test.remove_jobs(["joba", "jobb"]) == [B]
    assert await real.rules() == [A] and await test.rules() == []


async def test_a_port_the_other_forwards_is_not_free(two: tuple[IptablesFirewall, IptablesFirewall]) -> None:
    real, test = two
    await real.ensure_chains()
    await real.install([A])
    same_port = ForwardRule(job_id="jobc", external_port=A.external_port, target_ip="10.9.0.22",
                            internal_port=21003, gateway_ip=GW)
    with pytest.raises(FirewallError, match="20001"):
        await test.install([same_port])
    assert await test.rules() == []
    await test.install([B])  # other ports are fine
    assert await test.rules() == [B]
