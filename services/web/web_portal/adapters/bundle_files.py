"""App bundles from disk: every `*.app.json` of a directory, checked against the templates there."""

from __future__ import annotations

import logging
from pathlib import Path

from web_portal.domain.bundles import SUFFIX, Bundle, parse_bundle
from web_portal.errors import BundleError

log = logging.getLogger(__name__)


# scheduler-adapter reads `<name>.sh.mustache`; plain `<name>.mustache` is accepted too.
TEMPLATE_SUFFIXES = (".sh.mustache", ".mustache")


def template_file(templates_dir: Path, name: str) -> Path | None:
    """The batch-script template called `name`, if there is one."""
    return next((p for s in TEMPLATE_SUFFIXES if (p := templates_dir / f"{name}{s}").is_file()), None)


def load_bundles(bundles_dir: Path, templates_dir: Path) -> dict[str, Bundle]:
    """Bundles by name; BundleError naming the file and field for the first broken one."""
    bundles: dict[str, Bundle] = {}
    for path in sorted(bundles_dir.glob(f"*{SUFFIX}")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
        bundle = parse_bundle(path.name, data)
        if template_file(templates_dir, bundle.template) is None:
            raise BundleError(str(path), "template",
                              f"no template {bundle.template}{TEMPLATE_SUFFIXES[0]} in {templates_dir}")
        bundles[bundle.name] = bundle
    if not bundles:
        log.warning("no app bundles (*%s) in %s: the portal offers no application", SUFFIX, bundles_dir)
    return bundles
