"""python -m runner_api --config PATH"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from bwvisu_common.errors import BwvisuError
from bwvisu_common.logs import setup_logging
from bwvisu_common.settings import load_settings
from runner_api.bootstrap import build_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="runner_api", description="bwvisu's job API for the web portal")
    parser.add_argument("--config", help="config file (default: $BWVISU_CONFIG)")
    args = parser.parse_args()
    setup_logging("runner-api")
    try:
        settings = load_settings(args.config)
        app = build_app(settings)
    except BwvisuError as exc:
        sys.exit(f"runner-api: {exc}")
    conf = settings.runner_api
    uvicorn.run(app, host=conf.host, port=conf.port, log_level="warning",
                ssl_certfile=conf.tls_cert or None, ssl_keyfile=conf.tls_key or None)


if __name__ == "__main__":
    main()
