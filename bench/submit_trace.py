"""Where one POST /jobs spends its time in the real processes, SSH included (minicluster).

    python -m bench.submit_trace [N] [--config /var/lib/bwvisu-minicluster/bwvisu.json]

Starts a bwvisu of its own (bench/submit.py's way) whose processes time their steps
(bench/trace/sitecustomize.py), and N times in turn: a bare sbatch over an open connection,
SlurmCli.submit over this process's AsyncSshRunner, and one POST /jobs (all three under the
same load, on a shared machine). Prints the p50 of each step per POST, with the hand-overs
between processes (an event appended by one, handled by another), and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

from bench.shells import minicluster_config
from bench.submit import DEFAULT_CONFIG, SCRIPT, bare_sbatch, open_connection
from bwvisu_cli.testbed import isolated_system, runner_api_client_args
from bwvisu_common.events import new_job_id
from bwvisu_common.settings import load_settings
from scheduler_adapter.adapters.slurm import SlurmCli
from scheduler_adapter.adapters.ssh import AsyncSshRunner

HOOKS = str(Path(__file__).parent / "trace")
Record = tuple[str, float, float]  # "process:label", start, end (time.time())


def read_traces(directory: Path) -> list[Record]:
    records: list[Record] = []
    for path in directory.glob("*.trace"):
        lines = path.read_text().splitlines()
        argv = lines[0].split(" ")[1] if lines else ""
        process = next((name for name in ("runner_api", "scheduler_adapter", "project", "keyhole_api",
                                          "web_portal", "gateway_agent") if name in argv), "other")
        for line in lines[1:]:
            label, start, end = line.rsplit(" ", 2)
            records.append((f"{process}:{label}", float(start), float(end)))
    return sorted(records, key=lambda r: r[1])


def first(records: list[Record], label: str, nth: int = 0) -> Record | None:
    found = [r for r in records if r[0] == label]
    return found[nth] if len(found) > nth else None


def stages(records: list[Record], c0: float, c1: float, until: float) -> dict[str, float]:
    """Seconds per step of one submit whose client sent at c0 and had the answer at c1; what
    the processes did after the answer, until `until`, counts too (giving the claim back)."""
    mine = [r for r in records if c0 <= r[1] < until]
    out: dict[str, float] = {"client: whole POST /jobs": c1 - c0}
    counts: dict[str, int] = defaultdict(int)
    for label, start, end in mine:
        counts[label] += 1
        key = label if counts[label] == 1 else f"{label} #{counts[label]}"
        out[key] = out.get(key, 0.0) + end - start
    api_append = first(mine, "runner_api:jetstream.JetStreamEventStore.append")
    handled = first(mine, "scheduler_adapter:jetstream._handle_one")
    queued = first(mine, "scheduler_adapter:jetstream.JetStreamEventStore.append")
    waited = first(mine, "runner_api:live_jobs.LiveJobs.wait_for")
    http = first(mine, "runner_api:http.POST")
    submit = first(mine, "runner_api:handlers.Jobs.submit")
    if http:
        out["gap: client send -> runner-api ASGI start"] = http[1] - c0
        out["gap: runner-api ASGI end -> client has answer"] = c1 - http[2]
    if http and submit:
        out["gap: ASGI start -> Jobs.submit start"] = submit[1] - http[1]
    if api_append and handled:
        out["gap: JobSubmitted stored -> adapter handler starts"] = handled[1] - api_append[2]
    if queued and waited:
        out["gap: JobQueued stored -> runner-api's wait ends"] = waited[2] - queued[2]
    return out


async def bench(n: int, config_path: Path, uid: str) -> None:
    trace_dir = Path(tempfile.mkdtemp(prefix="bwvisu-trace-"))
    os.environ["BWVISU_TRACE_DIR"] = str(trace_dir)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [HOOKS, os.environ.get("PYTHONPATH")]))
    posts: list[tuple[float, float, float]] = []  # sent, answered, the next step's start
    bare: list[float] = []
    ours: list[float] = []
    try:
        with isolated_system(config_path) as config:
            settings = load_settings(config)
            body = {"uid": uid, "template-name": "sleep", "variables": {"seconds": "0", "runtime": "1"}}
            conn = await open_connection(settings)
            runner = AsyncSshRunner.from_settings(settings)
            slurm = SlurmCli(runner, settings.scheduler.job_tag)
            try:
                async with httpx.AsyncClient(**runner_api_client_args(settings), timeout=60) as client:
                    for i in range(n + 1):  # the first warms up
                        t0 = time.time()
                        if posts:
                            posts[-1] = (*posts[-1][:2], t0)
                        await bare_sbatch(conn, uid)
                        t1 = time.time()
                        await slurm.submit(uid, SCRIPT, new_job_id())
                        c0 = time.time()
                        (await client.post("/jobs", json=body)).raise_for_status()
                        c1 = time.time()
                        if i:
                            bare.append(t1 - t0)
                            ours.append(c0 - t1)
                            posts.append((c0, c1, c1 + 0.5))
                await asyncio.sleep(1)
            finally:
                await runner.close()
                conn.close()
    finally:
        del os.environ["BWVISU_TRACE_DIR"]
    report(n, trace_dir, posts, bare, ours)


def report(n: int, trace_dir: Path, posts: list[tuple[float, float, float]], bare: list[float],
           ours: list[float]) -> None:
    records = read_traces(trace_dir)
    per: dict[str, list[float]] = defaultdict(list)
    for c0, c1, until in posts:
        for key, seconds in stages(records, c0, c1, until).items():
            per[key].append(seconds)
    base = statistics.median(bare)
    print(f"{n} rounds of bare sbatch, SlurmCli.submit, POST /jobs; trace files in {trace_dir}")
    print(f"  {'bare sbatch over an open connection':<66} {base * 1000:7.2f}")
    mine = statistics.median(ours)
    print(f"  {'SlurmCli.submit (AsyncSshRunner, this process)':<66} {mine * 1000:7.2f}")
    for key in sorted(per, key=lambda k: -statistics.median(per[k])):
        print(f"  {key:<66} {statistics.median(per[key]) * 1000:7.2f}  (in {len(per[key])} of {n})")
    whole = statistics.median(per["client: whole POST /jobs"])
    print(f"SlurmCli.submit p50 ratio {statistics.median(ours) / base:.2f}x; "
          f"POST /jobs p50 ratio {whole / base:.2f}x the bare sbatch (target <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=30)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    asyncio.run(bench(args.n, minicluster_config(args.config), args.user))


if __name__ == "__main__":
    main()
