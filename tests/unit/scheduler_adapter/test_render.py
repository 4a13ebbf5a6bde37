from __future__ import annotations

import pytest

from bwvisu_common.keyhole_script import keyhole_block
from bwvisu_common.templates import FileTemplates
from scheduler_adapter.domain.render import JobContext, render_script, required_names
from scheduler_adapter.errors import TemplateError

CTX = JobContext(job_id="abc123", uid="alice", home_prefix="/home/", job_name="bwvisu-abc123")


def no_keyhole(count: int) -> str:
    return f"KEYHOLE {count}"


def test_variables_and_builtins_are_filled() -> None:
    template = "#SBATCH --output={{log_path}}\n#SBATCH --time={{runtime}}\necho {{job_id}} {{uid}} {{home}}\n"
    script = render_script(template, {"runtime": "30"}, CTX, no_keyhole)
    assert script == (
        "#SBATCH --output=/home/alice/bwvisu-job-abc123.out\n#SBATCH --time=30\n"
        "echo abc123 alice /home/alice\n"
    )


def test_a_variable_not_given_fails_naming_it() -> None:
    with pytest.raises(TemplateError, match="image_name"):
        render_script("run {{image_name}} for {{runtime}}", {"runtime": "5"}, CTX, no_keyhole)


def test_section_defaults_make_a_variable_optional() -> None:
    template = "--time={{#runtime}}{{runtime}}{{/runtime}}{{^runtime}}60{{/runtime}}"
    assert render_script(template, {}, CTX, no_keyhole) == "--time=60"
    assert render_script(template, {"runtime": "5"}, CTX, no_keyhole) == "--time=5"
    assert required_names(template) == set()


def test_names_inside_a_section_are_variables_not_string_methods() -> None:
    template = "{{#partition}}--partition={{partition}} {{.}}{{/partition}}"
    assert render_script(template, {"partition": "gpu"}, CTX, no_keyhole) == "--partition=gpu gpu"
    with pytest.raises(TemplateError, match="upper"):
        render_script("{{#partition}}{{upper}}{{/partition}}", {"partition": "gpu"}, CTX, no_keyhole)


def test_builtins_cannot_be_overridden() -> None:
    with pytest.raises(TemplateError, match="uid"):
        render_script("{{uid}}", {"uid": "root"}, CTX, no_keyhole)


@pytest.mark.parametrize("value", ["$(id)", "a;b", "x\ny", "../etc", "`x`", "\u0430lice"])
def test_hostile_values_are_refused_again(value: str) -> None:
    with pytest.raises(TemplateError, match="variables.v"):
        render_script("{{v}}", {"v": value}, CTX, no_keyhole)


def test_keyhole_directive_is_expanded_once() -> None:
    template = "#!/bin/bash\n#KEYHOLE-REQUEST-PORTS 2\nrun $KEYHOLE_PORT0\n"
    assert render_script(template, {}, CTX, no_keyhole) == "#!/bin/bash\nKEYHOLE 2\nrun $KEYHOLE_PORT0\n"


def test_keyhole_directive_twice_fails_clearly() -> None:
    template = "#KEYHOLE-REQUEST-PORTS 1\nx\n#KEYHOLE-REQUEST-PORTS 1\n"
    with pytest.raises(TemplateError, match="appears 2 times"):
        render_script(template, {}, CTX, no_keyhole)


def test_partials_are_refused() -> None:
    with pytest.raises(TemplateError, match="partial"):
        render_script("{{> /etc/passwd}}", {}, CTX, no_keyhole)


@pytest.mark.parametrize("name", ["xpra-desktop", "jupyter-notebook"])
def test_shipped_templates_render_with_only_optional_variables(name: str) -> None:
    template = FileTemplates().load(name)
    assert template is not None

    def keyhole(count: int) -> str:
        return keyhole_block(count, job_id=CTX.job_id, token="t" * 64, servers=["http://k:4243"],
                             hostname_suffix="")

    script = render_script(template, {"runtime": "10"}, CTX, keyhole)
    assert script.startswith("#!/bin/bash\n#SBATCH --output=/home/alice/bwvisu-job-abc123.out\n")
    assert "#SBATCH --time=10\n" in script
    assert "#KEYHOLE-REQUEST-PORTS" not in script and "{{" not in script


def test_production_template_needs_its_image() -> None:
    template = FileTemplates().load("xpra-singularity")
    assert template is not None
    with pytest.raises(TemplateError, match="image_name"):
        render_script(template, {"runtime": "10"}, CTX, no_keyhole)
    script = render_script(template, {"runtime": "10", "image_name": "pv/5.sif"}, CTX, no_keyhole)
    assert '/opt/bwvisu/images/pv/5.sif"' in script


def test_template_names_cannot_escape_the_directory(tmp_path) -> None:
    (tmp_path / "ok.sh.mustache").write_text("x")
    templates = FileTemplates(tmp_path)
    assert templates.load("ok") == "x"
    assert templates.load("../ok") is None and templates.load("missing") is None
    assert templates.names() == ["ok"]


@pytest.mark.parametrize("name", FileTemplates().names())
def test_every_shipped_template_sets_umask_077_before_any_command(name: str) -> None:
    template = FileTemplates().load(name) or ""
    commands = [line for line in template.splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith("{{")]
    assert commands[0] == "umask 077", (name, commands[:2])


@pytest.mark.parametrize(("name", "use"), [
    ("xpra-desktop", "--tcp-auth=env:name=BWVISU_SESSION_SECRET"),
    ("xpra-singularity", 'SINGULARITYENV_XPRA_PASSWORD="$BWVISU_SESSION_SECRET"'),
    ("jupyter-notebook", 'export JUPYTER_TOKEN="$BWVISU_SESSION_SECRET"'),
    ("port-echo", 'os.environ["BWVISU_SESSION_SECRET"]'),
])
def test_templates_with_ports_demand_the_session_secret_without_a_command_line(name: str, use: str) -> None:
    template = FileTemplates().load(name) or ""
    assert use in template
    # Only assignments to the environment expand it; no program gets it as an argument.
    expanding = [line for line in template.splitlines() if "$BWVISU_SESSION_SECRET" in line]
    assert all(line.startswith("export ") for line in expanding), expanding
