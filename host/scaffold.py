"""``agenthost plugins new``: a plugin package made from the templates in host/plugin_template.

The package is pip-installable as made: a pyproject with the ``agenthost.plugins`` entry point,
``py.typed``, a plugin with a settings model, a provider, an action and an event handler, a
README, and tests on agenthost's pytest fixtures; it passes its own tests, ``ruff`` and
``mypy --strict`` once installed (tests/devx/test_scaffold.py checks exactly that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

__all__ = ["TEMPLATES", "PluginNames", "ScaffoldError", "names_for", "scaffold"]

TEMPLATES = Path(__file__).resolve().parent / "plugin_template"
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_MAX = 30


class ScaffoldError(ValueError):
    """The name or the target directory cannot be used (the message says why)."""


@dataclass(frozen=True)
class PluginNames:
    name: str
    """The plugin's name (its entry point and config section ``plugins.<name>``)."""
    dist: str
    """The distribution: ``agenthost-<name>``."""
    package: str
    """The import package: ``agenthost_<name>``."""
    cls: str
    """The plugin class, e.g. ``WeatherPlugin``."""
    settings: str
    action: str
    """The action's name, e.g. ``WEATHER_GREET``."""
    env: str
    """The name in environment variables: ``AGENTHOST_PLUGINS__<env>__<KEY>``."""


def names_for(name: str) -> PluginNames:
    """Every name the package uses, derived from the plugin's name; `ScaffoldError` if the
    name is not lowercase letters and digits in words joined by ``-`` or ``_``."""
    if not _NAME.match(name) or len(name) > _MAX:
        raise ScaffoldError(
            f"plugin name {name!r}: use lowercase letters and digits, words joined by '-' or"
            f" '_', starting with a letter, at most {_MAX} characters (e.g. 'weather')"
        )
    words = re.split(r"[-_]", name)
    camel = "".join(word.capitalize() for word in words)
    snake = "_".join(words)
    return PluginNames(
        name=name,
        dist=f"agenthost-{'-'.join(words)}",
        package=f"agenthost_{snake}",
        cls=f"{camel}Plugin",
        settings=f"{camel}Settings",
        action=f"{snake.upper()}_GREET",
        env=snake.upper(),
    )


def scaffold(name: str, parent: Path) -> tuple[Path, list[Path]]:
    """Write the package for plugin `name` into ``parent/agenthost-<name>``; the directory and
    the files written. The directory must not exist or be empty (nothing is overwritten)."""
    names = names_for(name)
    target = parent / names.dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty: nothing was written")
    values = vars(names)
    plan: list[tuple[Path, str]] = []
    for template in sorted(TEMPLATES.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATES).with_suffix("")
        parts = [names.package if part == "PACKAGE" else part for part in relative.parts]
        plan.append((target.joinpath(*parts), Template(template.read_text()).substitute(values)))
    written = []
    for path, text in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return target, written
