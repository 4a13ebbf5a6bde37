"""The `bwvisu` command: up, status, rebuild-state, project, jobs, job."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from bwvisu_cli.figures import report
from bwvisu_cli.jobs import OPERATOR_COMMANDS, add_parsers
from bwvisu_cli.servers import listening
from bwvisu_cli.up import is_up, run_up, status_file
from bwvisu_common.connect import finished_jobs_kept_for, open_stores
from bwvisu_common.errors import BwvisuError
from bwvisu_common.logs import setup_logging
from bwvisu_common.metrics import JobStates
from bwvisu_common.projector import Projector
from bwvisu_common.service_process import ServiceProcess
from bwvisu_common.settings import ENV_CONFIG, Settings, load_settings

DEFAULT_CONFIG = "deploy/config/local.json"

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bwvisu", description="Remote visualization for HPC clusters.")
    parser.add_argument("--config", help=f"config file (default: ${ENV_CONFIG}, else {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start NATS, etcd and every bwvisu service; Ctrl-C stops them")
    sub.add_parser("status", help="show what `bwvisu up` runs")
    sub.add_parser("rebuild-state", help="wipe the etcd read model and replay the event stream")
    sub.add_parser("project", help="keep the etcd read model up to date (started by `up`)")
    add_parsers(sub)
    for p in sub.choices.values():
        p.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    args = parser.parse_args(argv)
    config = args.config or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG
    try:
        settings = load_settings(config)
        if args.command in OPERATOR_COMMANDS:
            code = OPERATOR_COMMANDS[args.command](settings, args)
        else:
            code = COMMANDS[args.command](settings, str(Path(config).resolve()))
    except BwvisuError as exc:
        print(f"bwvisu {args.command}: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def cmd_up(settings: Settings, config: str) -> int:
    setup_logging("bwvisu-up", fmt=settings.logging.format)
    run_up(settings, config)
    return 0


def cmd_status(settings: Settings, config: str) -> int:
    if not is_up(settings):
        print(f"bwvisu is not up (state dir {settings.state_dir}).")
        return 3
    data = json.loads(status_file(settings).read_text())
    print(f"bwvisu is up: pid {data['pid']}, since {data['started']}, state dir {settings.state_dir}")
    healthy = True
    for p in data["processes"]:
        alive = _alive(p["pid"])
        answers = p["address"] == "-" or listening(*_split(p["address"]))
        healthy &= alive and answers
        word = "running" if alive and answers else ("not listening" if alive else "DEAD")
        restarts = p.get("restarts", 0)
        print(f"  {p['name']:<18} pid {p['pid']:<8} {p['address']:<22} {word}, restarts {restarts}")
        if p.get("last_failure"):
            _print_failure(p["last_failure"], p["log"])
    try:
        events, projected = asyncio.run(asyncio.wait_for(_sequences(settings), 5))
        print(f"  events in the stream: up to sequence {events}; read model at {projected}")
    except (BwvisuError, TimeoutError) as exc:
        healthy = False
        print(f"  cannot read the stream or etcd: {exc}")
    print("\n".join(report(data)))
    return 0 if healthy else 1


async def _sequences(settings: Settings) -> tuple[int, int]:
    async with AsyncExitStack() as stack:
        events, state = await open_stores(settings, stack, "bwvisu-status")
        return await events.last_seq(), (await state.load_jobs())[1]


def cmd_rebuild(settings: Settings, config: str) -> int:
    async def rebuild() -> tuple[int, int]:
        async with AsyncExitStack() as stack:
            events, state = await open_stores(settings, stack, "bwvisu-rebuild")
            seq = await Projector(events, state, kept_for=finished_jobs_kept_for(settings)).rebuild()
            return seq, len((await state.load_jobs())[0])

    seq, jobs = asyncio.run(rebuild())
    print(f"rebuilt the read model: {jobs} jobs, stream sequence {seq}")
    return 0


def cmd_project(settings: Settings, config: str) -> int:
    setup_logging("projector", fmt=settings.logging.format)

    asyncio.run(project(settings))
    return 0


async def project(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Keep etcd's read model up to date until a signal; a dead projector raises TaskDied, naming it."""
    async with ServiceProcess("projector", stop) as process:
        events, state = await process.starting(open_stores(settings, process.stack, "bwvisu-projector"))
        projector = Projector(events, state, kept_for=finished_jobs_kept_for(settings))
        await process.follow(projector)
        process.metrics.add(JobStates(projector.all))
        process.serve_metrics(settings.metrics.host, settings.metrics.projector_port)
        log.info("projector caught up: read model at stream sequence %d", projector.seq)
        await process.run_until_stopped()


def _print_failure(failure: dict[str, str], log_file: str) -> None:
    print(f"      last failure: {failure['how']} at {failure['at']}; the end of {log_file}:")
    for line in failure.get("log_tail", "").splitlines():
        print(f"        {line}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


COMMANDS = {"up": cmd_up, "status": cmd_status, "rebuild-state": cmd_rebuild, "project": cmd_project}
