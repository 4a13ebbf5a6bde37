"""`python -m scheduler_adapter --config PATH`."""

from __future__ import annotations

import sys

from bwvisu_common.service_process import service_main
from scheduler_adapter.service import run


def main(argv: list[str] | None = None) -> int:
    return service_main("scheduler-adapter", "bwvisu's Slurm side: submit, watch, cancel.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
