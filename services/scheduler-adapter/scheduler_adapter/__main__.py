"""`python -m scheduler_adapter --config PATH`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bwvisu_common.errors import BwvisuError
from bwvisu_common.logs import setup_logging
from bwvisu_common.settings import load_settings
from scheduler_adapter.service import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scheduler_adapter",
                                     description="bwvisu's Slurm side: submit, watch, cancel.")
    parser.add_argument("--config", help="config file (default: $BWVISU_CONFIG)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except BwvisuError as exc:
        print(f"scheduler-adapter: {exc}", file=sys.stderr)
        return 2
    setup_logging("scheduler-adapter")
    try:
        asyncio.run(run(settings))
    except BwvisuError as exc:
        print(f"scheduler-adapter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
