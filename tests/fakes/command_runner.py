"""FakeCommandRunner: a scripted CommandRunner of (argv pattern, outcome) pairs for unit tests."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from scheduler_adapter.ports import CommandResult

# What a rule answers: stdout (exit 0), a full result, an exception to raise, or a
# function (plain or async) of argv and stdin.
Responder = Callable[[list[str], str | None], CommandResult | Awaitable[CommandResult]]
Outcome = str | CommandResult | BaseException | Responder


@dataclass
class Rule:
    pattern: tuple[str, ...]
    outcome: Outcome
    times: int | None = None  # None: any number of times
    used: int = 0

    def matches(self, argv: Sequence[str]) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        pattern = self.pattern
        if pattern and pattern[-1] == "**":  # the rest of argv, whatever it is
            pattern = pattern[:-1]
            argv = argv[: len(pattern)]
        return len(pattern) == len(argv) and all(
            fnmatch.fnmatchcase(arg, pat) for arg, pat in zip(argv, pattern, strict=True)
        )


@dataclass(frozen=True)
class Call:
    argv: list[str]
    input: str | None
    idempotent: bool


@dataclass
class FakeCommandRunner:
    """Answers each argv with the first rule whose pattern matches (fnmatch per argument, `**` = rest)."""

    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    node: str = "fake0"

    def on(self, pattern: Sequence[str], outcome: Outcome, *, times: int | None = None) -> FakeCommandRunner:
        self.rules.append(Rule(tuple(pattern), outcome, times))
        return self

    def calls_of(self, program: str) -> list[Call]:
        """Calls of `program`, also when run through `sudo -n -u <uid>`."""
        return [c for c in self.calls if _program(c.argv) == program]

    async def run(
        self, argv: Sequence[str], *, input: str | None = None, idempotent: bool = True
    ) -> CommandResult:
        args = [str(a) for a in argv]
        self.calls.append(Call(args, input, idempotent))
        for rule in self.rules:
            if rule.matches(args):
                rule.used += 1
                answer = self._answer(rule.outcome, args, input)
                return await answer if inspect.isawaitable(answer) else answer
        raise AssertionError(f"FakeCommandRunner has no rule for {args}")

    def _answer(
        self, outcome: Outcome, argv: list[str], input: str | None
    ) -> CommandResult | Awaitable[CommandResult]:
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, str):
            return CommandResult(0, outcome, "", self.node)
        if isinstance(outcome, CommandResult):
            return outcome
        return outcome(argv, input)


def _program(argv: list[str]) -> str:
    if argv[:2] == ["sh", "-c"] and len(argv) > 4:
        argv = argv[4:]  # a umask set before the real command (SlurmCli's PRIVATE_UMASK)
    if argv[:2] == ["sudo", "-n"] and len(argv) > 4:
        return argv[4]
    return argv[0] if argv else ""


def fake_id(users: dict[str, tuple[int, Sequence[str]]]) -> Responder:
    """Answers `id -- <user>` as coreutils does, from {name: (uid, [groups, primary first])}."""

    def answer(argv: list[str], _: str | None) -> CommandResult:
        name = argv[-1]
        if name not in users:
            return CommandResult(1, "", f"id: '{name}': no such user")
        uid, groups = users[name]
        listed = ",".join(f"{uid + i}({g})" for i, g in enumerate(groups))
        return CommandResult(0, f"uid={uid}({name}) gid={uid}({groups[0]}) groups={listed}\n", "")

    return answer
