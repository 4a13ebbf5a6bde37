"""The Firewall port: the in-memory fake and real iptables (in a throwaway netns) behave alike."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Collection, Iterator
from dataclasses import replace

import pytest

from gateway_agent.adapters.iptables import IptablesFirewall
from gateway_agent.adapters.netns import throwaway_netns
from gateway_agent.domain.rules import ForwardRule
from gateway_agent.errors import FirewallError
from gateway_agent.ports import Firewall
from tests.fakes.firewall import InMemoryFirewall
from tests.samples import sample

GW = "10.9.0.30"  # the gateway's external address, which every DNAT matches
A1 = ForwardRule(job_id="joba", external_port=20001, target_ip="10.9.0.20",
                 internal_port=21001, gateway_ip=GW)
A2 = ForwardRule(job_id="joba", external_port=20002, target_ip="10.9.0.20",
                 internal_port=21002, gateway_ip=GW)
B1 = ForwardRule(job_id="jobb", external_port=20003, target_ip="10.9.0.21",
                 internal_port=21001, gateway_ip=GW)


class FirewallContract:
    @pytest.fixture
    def firewall(self) -> Iterator[Firewall]:
        raise NotImplementedError

    async def test_starts_empty_and_installs_in_one_go(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        await firewall.ensure_chains()  # idempotent
        assert await firewall.rules() == []
        await firewall.install([A1, A2, B1])
        assert await firewall.rules() == [A1, A2, B1]

    async def test_install_is_idempotent(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        await firewall.install([A1])
        await firewall.install([A1, A2])
        assert await firewall.rules() == [A1, A2]

    async def test_remove_takes_only_that_jobs_rules(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        await firewall.install([A1, A2, B1])
        assert await firewall.remove_jobs(["joba"]) == [A1, A2]
        assert await firewall.rules() == [B1]
        assert await firewall.remove_jobs(["joba", "nobody"]) == []
        assert await firewall.rules() == [B1]

    async def test_a_forward_not_bound_to_the_gateways_address_is_refused(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        with pytest.raises(FirewallError, match="no gateway address"):
            await firewall.install([A2, replace(A1, gateway_ip="")])
        assert await firewall.rules() == []

    async def test_one_forward_per_client_address_all_removed_with_the_job(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        first, second = replace(A1, source="10.200.0.240"), replace(A1, source="10.200.0.241")
        await firewall.install([first, B1])
        await firewall.install([first, second])
        assert await firewall.rules() == [first, second, B1]
        assert await firewall.remove_jobs(["joba"]) == [first, second]
        assert await firewall.rules() == [B1]


    async def test_a_port_another_job_forwards_is_not_free(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        await firewall.install([A1])
        with pytest.raises(FirewallError, match="20001"):
            await firewall.install([replace(B1, external_port=A1.external_port), B1])
        assert await firewall.rules() == [A1]
        await firewall.install([replace(A1, source="10.200.0.240")])  # the same job's: fine


class TestInMemoryFirewall(FirewallContract):
    @pytest.fixture
    def firewall(self) -> Iterator[Firewall]:
        yield InMemoryFirewall()

    async def test_a_failed_batch_changes_nothing(self, firewall: InMemoryFirewall) -> None:
        firewall.fail_next = True
        with pytest.raises(FirewallError):
            await firewall.install([A1])
        assert await firewall.rules() == []


def _iptables_here() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("iptables") is not None


@pytest.mark.skipif(not _iptables_here(), reason="needs root, ip and iptables")
class TestIptablesFirewall(FirewallContract):
    @pytest.fixture
    def netns(self) -> Iterator[str]:
        with throwaway_netns() as name:
            yield name

    @pytest.fixture
    def firewall(self, netns: str) -> Iterator[Firewall]:
        yield IptablesFirewall(prefix=["ip", "netns", "exec", netns])

    def _save(self, netns: str) -> str:
        return subprocess.run(["ip", "netns", "exec", netns, "iptables-save", "-t", "nat"],
                              capture_output=True, text=True, check=True).stdout

    async def test_rules_live_in_own_chains_tagged_by_job(self, firewall: Firewall, netns: str) -> None:
        await firewall.ensure_chains()
        await firewall.install([A1])
        saved = self._save(netns)
        assert "-A PREROUTING -m comment --comment bwvisu -j BWVISU-DNAT" in saved
        assert "-A POSTROUTING -m comment --comment bwvisu -j BWVISU-SNAT" in saved
        # Each in the bucket of its port's block of 64, which our chain jumps to for those ports only.
        assert ("-A BWVISU-DNAT -p tcp -m tcp --dport 19968:20031 -m comment --comment bwvisu "
                "-j BWVISU-DNAT-19968") in saved
        assert ("-A BWVISU-SNAT -p tcp -m tcp --dport 20992:21055 -m comment --comment bwvisu "
                "-j BWVISU-SNAT-20992") in saved
        assert ("-A BWVISU-DNAT-19968 -d 10.9.0.30/32 -p tcp -m tcp --dport 20001 -m comment "
                "--comment \"bwvisu:joba\" -j DNAT --to-destination 10.9.0.20:21001") in saved
        await firewall.install([replace(A1, source="10.200.0.240")])
        restricted = ("-A BWVISU-DNAT-19968 -s 10.200.0.240/32 -d 10.9.0.30/32 -p tcp -m tcp --dport 20001 "
                      "-m comment --comment \"bwvisu:joba\" -j DNAT --to-destination 10.9.0.20:21001")
        assert restricted in self._save(netns)
        assert self._save(netns).count("-A BWVISU-SNAT-") == 1
        assert self._save(netns).count("-j BWVISU-DNAT-19968") == 1  # one jump per bucket
        assert "-A BWVISU-SNAT-20992 -d 10.9.0.20/32 -p tcp -m tcp --dport 21001" in saved

    async def test_rules_written_before_buckets_count_and_go(self, firewall: Firewall, netns: str) -> None:
        await firewall.ensure_chains()
        flat = ["-A BWVISU-DNAT -d 10.9.0.30/32 -p tcp -m tcp --dport 20001 -m comment --comment "
                "bwvisu:joba -j DNAT --to-destination 10.9.0.20:21001",
                "-A BWVISU-SNAT -d 10.9.0.20/32 -p tcp -m tcp --dport 21001 -m comment --comment "
                "bwvisu:joba -j MASQUERADE"]
        for line in flat:
            subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "-t", "nat",  # noqa: ASYNC221
                            *line.split()], check=True)
        await firewall.install([A1, B1])  # A1 is there already
        assert self._save(netns).count('"bwvisu:joba"') == 2
        assert await firewall.remove_jobs(["joba"]) == [A1]
        assert await firewall.rules() == [B1]
        assert '"bwvisu:joba"' not in self._save(netns)

    async def test_a_flushed_parent_chain_gets_its_jumps_back(self, firewall: Firewall, netns: str) -> None:
        await firewall.ensure_chains()
        await firewall.install([A1])
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "-t", "nat",  # noqa: ASYNC221
                        "-F", "BWVISU-DNAT"], check=True)
        # A full read (a reconcile starts with one) sees the jumps gone; a restarted agent knows nothing.
        await firewall.rules()
        await firewall.install([A1])
        assert "-j BWVISU-DNAT-19968" in self._save(netns)
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "-t", "nat",  # noqa: ASYNC221
                        "-F", "BWVISU-SNAT"], check=True)
        await IptablesFirewall(prefix=firewall._prefix).install([A1])  # type: ignore[attr-defined]
        assert "-j BWVISU-SNAT-20992" in self._save(netns)

    async def test_each_batch_is_timed_and_a_change_is_one_batch(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        await firewall.install([A1])
        batches = sample("bwvisu_iptables_batch_duration_seconds_count")
        await firewall.install([A1, A2, B1])
        await firewall.remove_jobs(["jobb"])
        assert sample("bwvisu_iptables_batch_duration_seconds_count") == batches + 2

    async def test_foreign_rules_are_left_alone(self, firewall: Firewall, netns: str) -> None:
        foreign = ["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "20001", "-j", "DNAT",
                   "--to-destination", "10.9.0.99:1"]
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", *foreign], check=True)  # noqa: ASYNC221
        await firewall.ensure_chains()
        await firewall.install([A1])
        await firewall.remove_jobs(["joba"])
        assert "--to-destination 10.9.0.99:1" in self._save(netns)

    async def test_a_half_deleted_forward_is_completed(self, firewall: Firewall, netns: str) -> None:
        await firewall.ensure_chains()
        await firewall.install([A1])
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "-t", "nat",  # noqa: ASYNC221
                        "-F", "BWVISU-SNAT-20992"], check=True)
        await firewall.install([A1])
        assert "-A BWVISU-SNAT-20992 -d 10.9.0.20/32" in self._save(netns)

    async def test_a_bucket_made_meanwhile_by_another_is_used(self, firewall: Firewall, netns: str) -> None:
        await firewall.ensure_chains()
        fw: IptablesFirewall = firewall  # type: ignore[assignment]
        read = fw._read

        async def then_another_makes_the_bucket(chains: Collection[str]) -> tuple[str, set[str]]:
            found = await read(chains)
            fw._read = read  # type: ignore[method-assign]
            subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "-t", "nat",  # noqa: ASYNC221
                            "-N", "BWVISU-DNAT-19968"], check=True)
            return found

        fw._read = then_another_makes_the_bucket  # type: ignore[method-assign]
        await fw.install([A1])
        assert await fw.rules() == [A1]
        assert self._save(netns).count("-j BWVISU-DNAT-19968") == 1

    async def test_a_refused_batch_changes_nothing(self, firewall: Firewall) -> None:
        await firewall.ensure_chains()
        fw = IptablesFirewall(prefix=firewall._prefix, iptables="iptables")  # type: ignore[attr-defined]
        with pytest.raises(FirewallError):
            await fw._restore(["-A BWVISU-DNAT -p tcp --dport 1 -j ACCEPT", "-A NO-SUCH-CHAIN -j ACCEPT"])
        assert await firewall.rules() == []
