"""App bundles from disk: every `*.app.json` of a directory, checked against the templates there."""

from __future__ import annotations

import logging
from pathlib import Path

from bwvisu_common.templates import FileTemplates
from web_portal.domain.bundles import SUFFIX, Bundle, parse_bundle
from web_portal.errors import BundleError

log = logging.getLogger(__name__)


def load_bundles(bundles_dir: Path, templates_dir: Path) -> dict[str, Bundle]:
    """Bundles by name; BundleError naming the file and field for the first broken one."""
    bundles: dict[str, Bundle] = {}
    templates = FileTemplates(templates_dir)
    for path in sorted(bundles_dir.glob(f"*{SUFFIX}")):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(str(path), "(file)", f"cannot read: {exc.strerror}") from exc
        bundle = parse_bundle(path.name, data)
        if not templates.exists(bundle.template):
            raise BundleError(str(path), "template", f"no template {templates.path(bundle.template)}")
        bundles[bundle.name] = bundle
    if not bundles:
        log.warning("no app bundles (*%s) in %s: the portal offers no application", SUFFIX, bundles_dir)
    return bundles
