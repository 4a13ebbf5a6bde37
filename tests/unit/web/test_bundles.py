"""App bundles: a good one loads; a broken one is an error naming the file and the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bwvisu_common.settings import parse_settings, templates_path
from bwvisu_common.templates import FileTemplates
from tests.unit.web.conftest import XPRA
from web_portal.adapters.bundle_files import load_bundles
from web_portal.domain.bundles import parse_bundle
from web_portal.errors import BundleError

FILE = "xpra-desktop.app.json"


def parse(data: object, file: str = FILE):  # type: ignore[no-untyped-def]
    return parse_bundle(file, json.dumps(data).encode())


def test_a_good_bundle_loads_with_its_fields():
    b = parse(XPRA)
    assert b.name == "xpra-desktop" and b.template == "xpra-desktop" and b.runtime_field == "runtime"
    assert [f.name for f in b.fields] == ["runtime", "cores", "partition"]
    assert b.field("runtime").default_text == "60" and b.field("partition").choices == ["debug", "gpu"]


def changed(path: str, value: object) -> dict:
    data = copy.deepcopy(XPRA)
    target, *keys = path.split(".")
    holder = data
    parts = [target, *keys]
    for part in parts[:-1]:
        holder = holder[int(part)] if isinstance(holder, list) else holder[part]
    last = parts[-1]
    if value is DELETE:
        del holder[last]
    elif isinstance(holder, list):
        holder[int(last)] = value
    else:
        holder[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (changed("title", DELETE), "title"),
        (changed("title", " "), "title"),
        (changed("template", "../etc/passwd"), "template"),
        (changed("icon", "skull"), "icon"),
        (changed("colour", "red"), "colour"),
        (changed("connect-url", "javascript:alert(1)"), "connect-url"),
        (changed("connect-url", "http://{host}:{port}/?u={user}"), "connect-url"),
        (changed("runtime-field", "walltime"), "runtime-field"),
        (changed("fields.0.min", "five"), "fields[0].min"),
        (changed("fields.0.max", 1), "fields[0].max"),
        (changed("fields.0.default", 1000), "fields[0].default"),
        (changed("fields.0.type", "slider"), "fields[0].type"),
        (changed("fields.1.name", "runtime"), "fields[1].name"),
        (changed("fields.1.name", "bad name;"), "fields[1].name"),
        (changed("fields.1.label", DELETE), "fields[1]"),
        (changed("fields.2.choices", []), "fields[2].choices"),
        (changed("fields.2.default", "cpu"), "fields[2].default"),
        (changed("fields.2.choices", ["debug", "$(reboot)"]), "fields[2].choices[1]"),
        (changed("fields.2.min", 1), "fields[2].min"),
    ],
)
def test_a_broken_bundle_names_the_file_and_the_field(data, field):
    with pytest.raises(BundleError) as err:
        parse(data)
    assert FILE in str(err.value) and field in str(err.value), str(err.value)


def test_bad_json_and_a_bad_file_name_are_named():
    with pytest.raises(BundleError, match=f"{FILE}.*not valid JSON"):
        parse_bundle(FILE, b"{")
    with pytest.raises(BundleError, match="file name"):
        parse(XPRA, "bad name!.app.json")


def test_loading_a_directory_checks_that_the_template_exists(tmp_path: Path):
    (tmp_path / FILE).write_text(json.dumps(XPRA))
    with pytest.raises(BundleError) as err:
        load_bundles(tmp_path, tmp_path)
    assert FILE in str(err.value) and "template" in str(err.value)
    (tmp_path / "xpra-desktop.sh.mustache").write_text("#!/bin/bash\n")
    assert list(load_bundles(tmp_path, tmp_path)) == ["xpra-desktop"]


def test_every_shipped_bundle_loads_against_the_shipped_templates():
    settings = parse_settings(b'{"bwvisu-home-prefix": "/home", "command-nodes": [{"ip": "10.0.0.1"}]}')
    templates = templates_path(settings)
    shipped = list(templates.glob("*.app.json"))
    if not shipped:
        pytest.skip("no app bundles shipped yet")
    bundles = load_bundles(templates, templates)
    assert len(bundles) == len(shipped)
    for bundle in bundles.values():
        # Every field must end up in the template, or the form would ask for nothing.
        text = FileTemplates(templates).load(bundle.template) or ""
        for f in bundle.fields:
            assert f"{{{{{f.name}}}}}" in text or f"{{{{#{f.name}}}}}" in text, (bundle.name, f.name)
        if "#KEYHOLE-REQUEST-PORTS" in text and bundle.connect_url:
            # Its application demands the session secret: Connect must carry it.
            assert "{secret}" in bundle.connect_url, bundle.name


def test_the_secret_placeholder_is_known_and_others_are_not():
    assert parse(changed("connect-url", "http://{host}:{port}/?token={secret}")).connect_url.endswith("{secret}")
    with pytest.raises(BundleError, match=r"\{secret\}"):
        parse(changed("connect-url", "http://{host}:{port}/?token={token}"))
