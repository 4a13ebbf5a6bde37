"""`python -m web_portal --config PATH`."""

from __future__ import annotations

import sys

from bwvisu_common.service_process import service_main
from web_portal.service import run


def main(argv: list[str] | None = None) -> int:
    return service_main("web", "bwvisu's web portal", run, argv)


if __name__ == "__main__":
    sys.exit(main())
