"""python -m keyhole_api --config PATH: the REST API running jobs call to get ports forwarded."""

from __future__ import annotations

import sys

from bwvisu_common.service_process import service_main
from keyhole_api.service import run


def main(argv: list[str] | None = None) -> int:
    return service_main("keyhole-api", __doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    sys.exit(main())
