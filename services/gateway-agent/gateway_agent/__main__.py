"""python -m gateway_agent --config PATH --gateway NAME: forwards, probes and cleans up on one gateway.

Runs on the gateway itself (on the minicluster: inside the gateway's network namespace).
"""

from __future__ import annotations

import argparse
import sys

from bwvisu_common.service_process import service_main
from gateway_agent.service import run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", required=True, help="this gateway's name in gateway-nodes")


def main(argv: list[str] | None = None) -> int:
    return service_main("gateway-agent", __doc__.splitlines()[0], run, argv, add_arguments,
                        instance=lambda args: args.gateway)


if __name__ == "__main__":
    sys.exit(main())
