"""`python -m runner_api --config PATH`."""

from __future__ import annotations

import sys

from bwvisu_common.service_process import service_main
from runner_api.service import run


def main(argv: list[str] | None = None) -> int:
    return service_main("runner-api", "bwvisu's job API for the web portal", run, argv)


if __name__ == "__main__":
    sys.exit(main())
