"""Rules carry their system's tag: an agent never reads, reconciles or deletes another bwvisu's rules."""

from __future__ import annotations

import pytest

from gateway_agent.domain import rules as r
from gateway_agent.domain.rules import ForwardRule

RULE = ForwardRule(job_id="abc123", external_port=20001, target_ip="10.200.0.20", internal_port=21001,
                   gateway_ip="10.200.0.30")
OTHER = ForwardRule(job_id="def456", external_port=20002, target_ip="10.200.0.21", internal_port=21002,
                   gateway_ip="10.200.0.30")


def saved(*lines: str) -> str:
    head = "*nat\n:BWVISU-DNAT - [0:0]\n:BWVISU-SNAT - [0:0]\n"
    return head + "".join(f"{x}\n" for x in lines) + "COMMIT\n"


def test_the_job_tag_makes_the_rule_tag() -> None:
    assert r.rule_tag("bwvisu") == r.TAG == "bwvisu:"
    assert r.rule_tag("bwvtest1a2b3c") == "bwvtest1a2b3c:"
    assert 'comment "bwvtest1a2b3c:abc123"' in r.dnat_line(RULE, "bwvtest1a2b3c:")


@pytest.mark.parametrize("bad", ["", "a b", 'a"', "a\n", "x" * 40, "a:b"])
def test_a_tag_that_cannot_be_an_iptables_comment_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        r.rule_tag(bad)


def test_each_system_sees_only_its_own_rules() -> None:
    mine, theirs = "bwvtest1a2b3c:", r.TAG
    text = saved(r.dnat_line(RULE, mine), r.snat_line(RULE, mine),
                 r.dnat_line(OTHER, theirs), r.snat_line(OTHER, theirs))
    assert r.forwards(r.parse_save(text, mine)) == [RULE]
    assert r.forwards(r.parse_save(text)) == [OTHER]
    # Reconciling "nothing should be here" deletes only our own lines.
    deletes = r.delete_lines(r.parse_save(text, mine), {"abc123", "def456"})
    assert len(deletes) == 2 and all(mine in d for d in deletes)
    # A forward of the other system does not count as ours: ours is installed beside it.
    present = r.parse_save(saved(r.dnat_line(RULE, theirs), r.snat_line(RULE, theirs)), mine)
    assert r.missing_lines([RULE], present, mine) == [r.dnat_line(RULE, mine), r.snat_line(RULE, mine)]


def test_ports_another_system_forwards_are_known_as_taken() -> None:
    mine, theirs = "bwvtest1a2b3c:", r.TAG
    text = saved(r.dnat_line(RULE, mine), r.snat_line(RULE, mine), r.dnat_line(OTHER, theirs),
                 '-A BWVISU-DNAT -p tcp -m tcp --dport 20003 -j DNAT --to-destination 10.0.0.9:1')
    assert r.foreign_ports(text, mine) == {20002, 20003}
    assert r.foreign_ports(text, theirs) == {20001, 20003}
