"""From a mustache template and a job's variables to the batch script sbatch reads. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import chevron
import chevron.tokenizer

from bwvisu_common import events as ev
from bwvisu_common.errors import InvalidInput
from bwvisu_common.keyhole_script import DIRECTIVE, keyhole_block
from bwvisu_common.templates import job_log_path
from bwvisu_common.validation import check_template_name, check_uid, check_variables
from scheduler_adapter.domain.secrets import JobSecrets
from scheduler_adapter.domain.slurm import job_name
from scheduler_adapter.errors import TemplateError

# Names the adapter fills itself; a request cannot set them.
BUILTINS = ("job_id", "uid", "log_path", "home", "job_name")

# count -> the bash that replaces the directive line.
KeyholeExpander = Callable[[int], str]


@dataclass(frozen=True)
class SubmitConfig:
    """The site's part of every job's script: where homes are, the tag, the keyhole servers."""

    home_prefix: str
    tag: str = "bwvisu"
    keyhole_servers: list[str] = field(default_factory=list)
    hostname_suffix: str = ""


@dataclass(frozen=True)
class JobContext:
    """Who runs the job and under which names: the source of the built-in variables."""

    job_id: str
    uid: str
    home_prefix: str
    job_name: str

    @property
    def home(self) -> str:
        return f"{self.home_prefix.rstrip('/')}/{self.uid}"

    @property
    def log_path(self) -> str:
        return job_log_path(self.home_prefix, self.uid, self.job_id)

    def builtins(self) -> dict[str, str]:
        return {"job_id": self.job_id, "uid": self.uid, "log_path": self.log_path,
                "home": self.home, "job_name": self.job_name}


class _Text:
    """A value as mustache sees it: a string with no fields.

    Plain str values would let `{{partition}}` inside `{{#partition}}` resolve to the
    str method `partition` (mustache looks names up in the section's value first).
    """

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __str__(self) -> str:
        return self.value

    def __bool__(self) -> bool:
        return bool(self.value)

    def __getitem__(self, key: object) -> object:
        raise KeyError(key)  # so names inside its section mean the outer ones


def required_names(template: str) -> set[str]:
    """Variables the template prints outside a section guarded by the same name.

    `{{#x}}{{x}}{{/x}}{{^x}}default{{/x}}` is how a template gives `x` a default, so
    names used only as sections (or inside their own section) are optional.
    """
    required: set[str] = set()
    open_sections: list[str] = []
    try:
        tokens = list(chevron.tokenizer.tokenize(template))
    except chevron.tokenizer.ChevronError as exc:
        raise TemplateError(f"template is not valid mustache: {exc}") from exc
    for kind, name in tokens:
        if kind in ("section", "inverted section"):
            open_sections.append(name)
        elif kind == "end":
            if open_sections:
                open_sections.pop()
        elif kind == "partial":
            raise TemplateError(f"template includes a partial ({name!r}); templates must be self-contained")
        elif kind in ("variable", "no escape") and name != "." and name not in open_sections:
            required.add(name)
    return required


def render_script(
    template: str, variables: Mapping[str, object], context: JobContext, keyhole: KeyholeExpander
) -> str:
    """The batch script for one job; TemplateError names what is wrong."""
    try:
        checked = check_variables(variables)
        check_uid(context.uid)
    except InvalidInput as exc:
        raise TemplateError(str(exc)) from exc
    reserved = sorted(set(checked) & set(BUILTINS))
    if reserved:
        raise TemplateError(f"variables {', '.join(reserved)} are set by bwvisu and cannot be given")
    data = {name: _Text(value) for name, value in {**checked, **context.builtins()}.items()}
    missing = sorted(required_names(template) - set(data))
    if missing:
        raise TemplateError(f"template needs variables that were not given: {', '.join(missing)}")
    # Values are allow-listed ([A-Za-z0-9./_-]), so mustache's HTML escaping never changes them.
    script = chevron.render(template, data)
    return expand_keyhole(script, keyhole)


def expand_keyhole(script: str, keyhole: KeyholeExpander) -> str:
    """Replace the one `#KEYHOLE-REQUEST-PORTS N` line with the client block."""
    found = list(DIRECTIVE.finditer(script))
    if len(found) > 1:
        raise TemplateError(
            f"#KEYHOLE-REQUEST-PORTS appears {len(found)} times; a script may request ports once"
        )
    if not found:
        return script
    match = found[0]
    count = int(match.group(1))
    if count < 1:
        raise TemplateError("#KEYHOLE-REQUEST-PORTS needs a count of at least 1")
    return script[: match.start()] + keyhole(count) + script[match.end():]


def template_name(event: ev.JobSubmitted) -> str:
    """The job's template name, checked (runner-api checked it too, but events outlive versions)."""
    try:
        return check_template_name(event.template_name)
    except InvalidInput as exc:
        raise TemplateError(str(exc)) from exc


def render_job(template: str, event: ev.JobSubmitted, config: SubmitConfig,
               chosen: JobSecrets) -> tuple[str, bool]:
    """The job's script, and whether it asks for ports (only then it carries the session secret)."""
    context = JobContext(job_id=event.job_id, uid=event.uid, home_prefix=config.home_prefix,
                         job_name=job_name(config.tag, event.job_id))
    expanded: list[int] = []

    def keyhole(count: int) -> str:
        expanded.append(count)
        return keyhole_block(count, job_id=event.job_id, token=chosen.token, servers=config.keyhole_servers,
                             hostname_suffix=config.hostname_suffix, session_secret=chosen.session)

    return render_script(template, event.variables, context, keyhole), bool(expanded)
