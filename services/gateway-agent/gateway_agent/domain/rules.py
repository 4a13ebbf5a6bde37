"""Forward rules and their iptables text: what the agent installs, in its own chains only.

Each forward is two rules tagged `<job tag>:<job id>` (`bwvisu:<job id>` by default): a DNAT
in BWVISU-DNAT (hooked into nat PREROUTING) and a MASQUERADE in BWVISU-SNAT (nat POSTROUTING),
so that replies come back through the gateway whatever the compute node's default route is.
The DNAT always matches the gateway's external address (`-d`): a forward must never hijack
the port on another address of the gateway. A forward limited to its owner's client
addresses is one DNAT per address (`-s`), all sharing one MASQUERADE.
The rules are written in the form `iptables-save` prints them, and read back by meaning, not
by text. Rules with another tag belong to another bwvisu on the same gateway: never ours.

At scale the two chains only dispatch: each holds a jump per block of BUCKET_PORTS ports
(`--dport 20032:20095 -j BWVISU-DNAT-20032`, by external port; BWVISU-SNAT by internal port), and
the rules live in those small chains. iptables-nft reads a whole chain to delete one rule by its
text, so a change to one forward costs as much as its block holds, not as much as the gateway.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, replace

DNAT_CHAIN = "BWVISU-DNAT"
SNAT_CHAIN = "BWVISU-SNAT"
# (built-in chain, our chain) jumps installed once per gateway.
HOOKS = (("PREROUTING", DNAT_CHAIN), ("POSTROUTING", SNAT_CHAIN))
TAG = "bwvisu:"
BUCKET_PORTS = 64
HOOK_COMMENT = "bwvisu"  # the comment of our hooks and jumps (no job's: they are no forward)
_TAG = re.compile(r"[A-Za-z0-9_.-]{1,32}:")
_JOB_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


# Cached: a gateway's thousands of rules name a few hundred nodes, read back on every reconcile.
@functools.lru_cache(maxsize=4096)
def is_ipv4(text: str) -> bool:
    """A dotted-quad IPv4 address, nothing else (no prefix, no leading zeros, no spaces)."""
    try:
        return str(ipaddress.IPv4Address(text)) == text
    except ValueError:
        return False


@dataclass(frozen=True, order=True)
class ForwardRule:
    """Gateway port `external_port` to `target_ip:internal_port`, for one job."""

    job_id: str
    external_port: int
    target_ip: str
    internal_port: int
    gateway_ip: str = ""  # the -d of the DNAT; a rule without it is never written
    source: str = ""  # the -s of the DNAT: only this client address; "" for any

    def __post_init__(self) -> None:
        # These strings end up in iptables-restore input: nothing but the expected shapes.
        if not _JOB_ID.fullmatch(self.job_id):
            raise ValueError(f"job id {self.job_id!r} cannot tag a rule")
        if not is_ipv4(self.target_ip):
            raise ValueError(f"target {self.target_ip!r} is not an IPv4 address")
        for name, value in (("gateway address", self.gateway_ip), ("source", self.source)):
            if value and not is_ipv4(value):
                raise ValueError(f"{name} {value!r} is not an IPv4 address")
        for port in (self.external_port, self.internal_port):
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} out of range")


@dataclass(frozen=True)
class RuleLine:
    """One parsed rule of our chains: `kind` is "dnat" or "snat"; snat has no external port."""

    kind: str
    job_id: str
    target_ip: str
    internal_port: int
    external_port: int = 0
    text: str = ""
    gateway_ip: str = ""  # dnat: its -d ("" for a rule written before rules matched it)
    source: str = ""  # dnat: its -s, "" for any


def rule_tag(job_tag: str) -> str:
    """The comment prefix of one bwvisu's rules, from its Slurm job tag (`bwvisu` -> `bwvisu:`)."""
    tag = f"{job_tag}:"
    if not _TAG.fullmatch(tag):
        raise ValueError(f"job tag {job_tag!r} cannot tag iptables rules")
    return tag


def per_source(rules: Iterable[ForwardRule], sources: Iterable[str]) -> list[ForwardRule]:
    """Each forward once per client address: what a restricted forward installs (nothing before
    its owner connected, so nothing reaches the application yet)."""
    return [replace(r, source=s) for r in rules for s in sources]


def bucket(chain: str, port: int) -> str:
    """The chain under DNAT_CHAIN or SNAT_CHAIN that holds the rules for `port`."""
    return f"{chain}-{port - port % BUCKET_PORTS}"


def is_chain_of(name: str, chain: str) -> bool:
    """`name` is `chain` itself or one of its buckets."""
    return name == chain or (name.startswith(chain + "-") and name[len(chain) + 1:].isdigit())


def bucket_jump(name: str) -> str:
    """The rule that sends a bucket's ports from its parent chain into the bucket."""
    parent, _, first = name.rpartition("-")
    low = int(first)
    return (f"-A {parent} -p tcp -m tcp --dport {low}:{low + BUCKET_PORTS - 1} -m comment --comment "
            f"{HOOK_COMMENT} -j {name}")


def jumped(saved: str) -> set[str]:
    """The buckets that the parent chains' rules in `saved` jump to."""
    return {line.rsplit(" ", 1)[1] for line in saved.splitlines()
            if line.startswith(("-A " + DNAT_CHAIN + " ", "-A " + SNAT_CHAIN + " "))
            and f"--comment {HOOK_COMMENT} -j " in line}


def bucket_setup(buckets: Iterable[str], existing: Iterable[str], saved: str) -> list[str]:
    """What makes these buckets work: `-N` for those not `existing` yet, and a jump to each one that
    `saved` (the parent chains' rules) does not jump to (a jump deleted by hand comes back)."""
    have, jumps = set(existing), jumped(saved)
    setup: list[str] = []
    for name in sorted(buckets):
        if name not in have:
            setup.append(f"-N {name}")
        if name not in jumps:
            setup.append(bucket_jump(name))
    return setup


def buckets_of(rules: Iterable[ForwardRule]) -> set[str]:
    """The buckets that hold (or would hold) these forwards."""
    return {b for r in rules
            for b in (bucket(DNAT_CHAIN, r.external_port), bucket(SNAT_CHAIN, r.internal_port))}


def dnat_line(rule: ForwardRule, tag: str = TAG, bucketed: bool = False) -> str:
    """The DNAT of a forward, in iptables-save's order; ValueError without the gateway's address."""
    if not rule.gateway_ip:
        # Without -d the DNAT would take the port on every address of the gateway.
        raise ValueError(f"forward of job {rule.job_id} to port {rule.external_port} names no "
                         "gateway address (-d)")
    source = f"-s {rule.source}/32 " if rule.source else ""
    chain = bucket(DNAT_CHAIN, rule.external_port) if bucketed else DNAT_CHAIN
    return (f"-A {chain} {source}-d {rule.gateway_ip}/32 -p tcp -m tcp --dport {rule.external_port} "
            f"-m comment --comment \"{tag}{rule.job_id}\" -j DNAT "
            f"--to-destination {rule.target_ip}:{rule.internal_port}")


def snat_line(rule: ForwardRule, tag: str = TAG, bucketed: bool = False) -> str:
    chain = bucket(SNAT_CHAIN, rule.internal_port) if bucketed else SNAT_CHAIN
    return (f"-A {chain} -d {rule.target_ip}/32 -p tcp -m tcp --dport {rule.internal_port} "
            f"-m comment --comment \"{tag}{rule.job_id}\" -j MASQUERADE")


def batch(lines: Iterable[str]) -> str:
    """An `iptables-restore --noflush` input for the nat table."""
    return "*nat\n" + "".join(line + "\n" for line in lines) + "COMMIT\n"


def missing_lines(wanted: Iterable[ForwardRule], present: Iterable[RuleLine], tag: str = TAG,
                  bucketed: bool = False) -> list[str]:
    """The rule lines of `wanted` that are not in the chains yet (either half of a forward); a rule
    counts as there in whichever of our chains it is."""
    have = {_key(line) for line in present}
    lines = []
    for rule in sorted(set(wanted)):
        dnat = ("dnat", rule.job_id, rule.external_port, rule.target_ip, rule.internal_port,
                rule.gateway_ip, rule.source)
        snat = ("snat", rule.job_id, 0, rule.target_ip, rule.internal_port, "", "")
        if dnat not in have:
            lines.append(dnat_line(rule, tag, bucketed))
            have.add(dnat)
        if snat not in have:
            # One MASQUERADE serves every source of the same forward.
            lines.append(snat_line(rule, tag, bucketed))
            have.add(snat)
    return lines


def delete_lines(present: Iterable[RuleLine], job_ids: set[str]) -> list[str]:
    """`-D` lines for every rule of these jobs, from the text iptables-save printed."""
    return ["-D" + line.text[2:] for line in present if line.job_id in job_ids]


def forwards(present: Iterable[RuleLine]) -> list[ForwardRule]:
    """The forwards the DNAT rules describe."""
    found = set()
    for r in present:
        if r.kind != "dnat":
            continue
        try:
            found.add(ForwardRule(job_id=r.job_id, external_port=r.external_port, target_ip=r.target_ip,
                                  internal_port=r.internal_port, gateway_ip=r.gateway_ip, source=r.source))
        except ValueError:
            # A hand-edited rule of ours (a network as source, say): reconcile replaces its job's rules.
            found.add(ForwardRule(job_id=r.job_id, external_port=r.external_port, target_ip=r.target_ip,
                                  internal_port=r.internal_port))
    return sorted(found)


def taken_ports(wanted: Iterable[ForwardRule], present: Iterable[RuleLine]) -> set[int]:
    """External ports of `wanted` that a rule of ours forwards for another job: not free."""
    wanted = list(wanted)
    jobs = {f.job_id for f in wanted}
    held = {line.external_port for line in present if line.kind == "dnat" and line.job_id not in jobs}
    return held & {f.external_port for f in wanted}


def foreign_ports(text: str, tag: str = TAG) -> set[int]:
    """External ports that DNAT rules of our chain not tagged `tag` (another bwvisu's) use."""
    return {line.external_port for line in parse_save(text, tag="")
            if line.kind == "dnat" and not line.job_id.startswith(tag)}


# Our rules exactly as iptables prints those we write: read with one match instead of shell-splitting
# (thousands of them on every reconcile). Anything else takes the general way below.
_OURS_DNAT = re.compile(r'-A BWVISU-DNAT(?:-\d+)? (?:-s ([\d.]+)/32 )?-d ([\d.]+)/32 -p tcp -m tcp '
                        r'--dport (\d+) -m comment --comment "([^"\s\\\']+)" '
                        r'-j DNAT --to-destination ([\d.]+):(\d+)')
_OURS_SNAT = re.compile(r'-A BWVISU-SNAT(?:-\d+)? -d ([\d.]+)/32 -p tcp -m tcp --dport (\d+) '
                        r'-m comment --comment "([^"\s\\\']+)" -j MASQUERADE')


def parse_save(text: str, tag: str = TAG) -> list[RuleLine]:
    """Our rules (tagged `tag`) in `iptables-save -t nat` output; anything else is ignored."""
    found = []
    for raw in text.splitlines():
        if not raw.startswith((f"-A {DNAT_CHAIN}", f"-A {SNAT_CHAIN}")):
            continue
        if tag and f'"{tag}' not in raw:
            continue  # iptables quotes a comment with a ':', and every tag ends with one
        parsed = _parse_ours(raw, tag) or _parse_line(raw, tag)
        if parsed is not None:
            found.append(parsed)
    return found


def _parse_ours(raw: str, tag: str) -> RuleLine | None:
    if m := _OURS_DNAT.fullmatch(raw):
        source, gateway_ip, port, comment, ip, internal = m.groups()
        if comment.startswith(tag):
            return RuleLine("dnat", comment[len(tag):], ip, int(internal), int(port), raw, gateway_ip,
                            source or "")
    elif m := _OURS_SNAT.fullmatch(raw):
        ip, internal, comment = m.groups()
        if comment.startswith(tag):
            return RuleLine("snat", comment[len(tag):], ip, int(internal), 0, raw)
    return None


def _words(raw: str) -> list[str]:
    """A rule's words as shlex splits them; without shlex in the common case, one comment quoted as
    iptables quotes ours (a tag holds a ':'), so that reading thousands of rules stays quick."""
    if "'" in raw or "\\" in raw or raw.count('"') not in (0, 2):
        return shlex.split(raw)
    if '"' not in raw:
        return raw.split()
    first, _, rest = raw.partition('"')
    comment, _, last = rest.partition('"')
    if not comment or any(c.isspace() for c in comment) or not first[-1:].isspace() \
            or (last and not last[0].isspace()):
        return shlex.split(raw)
    return [*first.split(), comment, *last.split()]


def _parse_line(raw: str, tag: str) -> RuleLine | None:
    args = _words(raw)
    opts = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("-")}
    comment = opts.get("--comment", "")
    if not comment.startswith(tag):
        return None
    job = comment[len(tag):]
    try:
        chain = opts.get("-A", "")
        if is_chain_of(chain, DNAT_CHAIN) and opts.get("-j") == "DNAT":
            ip, _, port = opts["--to-destination"].partition(":")
            gateway_ip, source = _address(opts.get("-d", "")), _address(opts.get("-s", ""))
            return RuleLine("dnat", job, ip, int(port), int(opts["--dport"]), raw, gateway_ip, source)
        if is_chain_of(chain, SNAT_CHAIN) and opts.get("-j") == "MASQUERADE":
            return RuleLine("snat", job, opts["-d"].removesuffix("/32"), int(opts["--dport"]), 0, raw)
    except (KeyError, ValueError):
        return None
    return None


def _address(match: str) -> str:
    """`10.0.0.1/32` as iptables-save prints a host match to `10.0.0.1`; a wider match stays as is,
    so that it never equals a rule we would write."""
    return match.removesuffix("/32")


def _key(line: RuleLine) -> tuple[str, str, int, str, int, str, str]:
    return (line.kind, line.job_id, line.external_port, line.target_ip, line.internal_port,
            line.gateway_ip, line.source)
