"""FakeCommandRunner: a scripted CommandRunner of (argv pattern, outcome) pairs for unit tests;
tests/contract/test_command_runner.py holds it to AsyncSshRunner."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from scheduler_adapter.errors import CommandOutcomeUnknown, SchedulerUnavailable
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
    """Answers each argv with the first rule whose pattern matches (fnmatch per argument, `**` = rest).

    As AsyncSshRunner: `down` means no node answers (SchedulerUnavailable, nothing ran); an answer
    slower than `command_timeout` is a lost connection (SchedulerUnavailable for an idempotent
    command, CommandOutcomeUnknown for another); every result names the node that ran it."""

    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    node: str = "fake0"
    down: bool = False
    command_timeout: float = 30.0

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
        if self.down:
            raise SchedulerUnavailable(f"no command node answered: {self.node}: cannot connect")
        self.calls.append(Call(args, input, idempotent))
        for rule in self.rules:
            if rule.matches(args):
                rule.used += 1
                answer = self._answer(rule.outcome, args, input)
                if inspect.isawaitable(answer):
                    answer = await self._in_time(answer, args, idempotent)
                return answer if answer.node else dataclasses.replace(answer, node=self.node)
        raise AssertionError(f"FakeCommandRunner has no rule for {args}")

    async def _in_time(self, answer: Awaitable[CommandResult], argv: list[str],
                       idempotent: bool) -> CommandResult:
        try:
            return await asyncio.wait_for(answer, self.command_timeout)
        except TimeoutError:
            lost = f"{self.node}: no answer within {self.command_timeout} s"
            if not idempotent:
                raise CommandOutcomeUnknown(f"{argv[0]} sent to {self.node}, then the connection failed: "
                                            f"{lost}") from None
            raise SchedulerUnavailable(f"no command node answered: {lost}") from None

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
    if argv[:3] == ["sudo", "-n", "-u"] and len(argv) > 4:
        return argv[4]
    if argv[:2] == ["sudo", "-n"] and len(argv) > 2:
        return argv[2]  # as root (scontrol update, bwvisu's own sudo rule)
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


async def run_here(argv: list[str], input: str | None) -> CommandResult:
    """Runs argv on this machine through a shell, as sshd hands a command to the user's shell
    (a missing program is exit status 127, not an exception)."""
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", 'exec "$@"', "sh", *argv, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate(None if input is None else input.encode())
    finally:
        if proc.returncode is None:  # cancelled: the command timed out
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    status = proc.returncode or 0
    return CommandResult(128 - status if status < 0 else status,  # killed: as a shell reports it
                         out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def fake_tail(files: dict[str, str]) -> Responder:
    """Answers `sudo -n -u <user> tail -n <N> -- <path>` as coreutils does, from {path: text}."""

    def answer(argv: list[str], _: str | None) -> CommandResult:
        lines, path = int(argv[argv.index("tail") + 2]), argv[-1]
        if path not in files:
            return CommandResult(1, "", f"tail: cannot open '{path}' for reading: No such file or directory")
        return CommandResult(0, "".join(files[path].splitlines(keepends=True)[-lines:]), "")

    return answer
