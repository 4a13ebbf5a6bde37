"""python -m web_portal --config PATH"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from bwvisu_common.errors import BwvisuError
from bwvisu_common.logs import setup_logging
from bwvisu_common.settings import load_settings
from web_portal.bootstrap import build_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="web_portal", description="bwvisu's web portal")
    parser.add_argument("--config", help="config file (default: $BWVISU_CONFIG)")
    args = parser.parse_args()
    setup_logging("web")
    try:
        settings = load_settings(args.config)
        app = build_app(settings)
    except BwvisuError as exc:
        sys.exit(f"web portal: {exc}")
    web = settings.web
    # Open event streams would hold a shutdown forever; give them two seconds.
    uvicorn.run(app, host=web.host, port=web.port, log_level="warning", proxy_headers=False,
                timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
