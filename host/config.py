"""Loading the configuration: defaults < YAML file < ``AGENTHOST_*`` environment variables.

The file is ``--config PATH``, else ``$AGENTHOST_CONFIG``, else ``config/agenthost.yaml`` if it
exists. Environment variables are read by pydantic-settings (nested with ``__``). The merged
values are validated against `contracts.config.HostConfig`; every problem is reported at once
with its key path and where the value came from (file and line, or the variable's name), never
with a secret's value. `LoadedConfig.sources` remembers where each key came from, for
``agenthost config show``.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from contracts.config import HostConfig
from contracts.errors import AgentHostError
from host.parsing import MAX_DEPTH, ParseError, decode, load_json, load_yaml
from host.secrets import MASK, is_secret_name, masked, secret_paths, secret_values

__all__ = [
    "BACKENDS_ENV",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "MASK",
    "OTHER_VARIABLES",
    "POSTGRES_URL",
    "ConfigError",
    "LoadedConfig",
    "flatten",
    "is_secret_name",
    "load_config",
    "masked",
    "plugin_settings",
    "problems_message",
    "secret_paths",
    "secret_values",
    "test_variables",
    "unknown_variables",
]

ENV_PREFIX = "AGENTHOST_"
DEFAULT_CONFIG = Path("config/agenthost.yaml")
OTHER_VARIABLES = frozenset({"AGENTHOST_CONFIG", "AGENTHOST_EVENT_STORE"})
"""``AGENTHOST_*`` variables that are not settings: the config file's path, the events CLI's
store. ``AGENTHOST_TEST_*`` belong to the test kit (read here, `test_variables`, for
host.pytest_plugin): this module is the only one reading ``AGENTHOST_*`` variables."""
TEST_PREFIX = "AGENTHOST_TEST_"
POSTGRES_URL = f"{TEST_PREFIX}POSTGRES_URL"
BACKENDS_ENV = f"{TEST_PREFIX}BACKENDS"


@dataclass(frozen=True, slots=True)
class TestVariables:
    """The test kit's ``AGENTHOST_TEST_*`` variables (`host.pytest_plugin`)."""

    __test__ = False  # not a pytest test class
    postgres_url: str | None
    """``AGENTHOST_TEST_POSTGRES_URL``: the PostgreSQL to test on (else pgserver starts one)."""
    backends: str | None
    """``AGENTHOST_TEST_BACKENDS``: comma-separated store backends to test (else every one)."""


def test_variables(environ: Mapping[str, str] | None = None) -> TestVariables:
    """The test kit's variables, read from `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    return TestVariables(environ.get(POSTGRES_URL) or None, environ.get(BACKENDS_ENV) or None)


EVENT_STORE_ENV = f"{ENV_PREFIX}EVENT_STORE"
"""``agenthost events``' default ``--store``: a SQLite file or a PostgreSQL URL."""


def event_store_variable(environ: Mapping[str, str] | None = None) -> str | None:
    """The event store ``agenthost events`` reads when no ``--store`` is given, if set."""
    environ = os.environ if environ is None else environ
    return environ.get(EVENT_STORE_ENV) or None


class ConfigError(AgentHostError):
    """Invalid configuration: names the file or variable, the key path and the reason."""


class _EnvSettings(BaseSettings, HostConfig):
    """HostConfig as pydantic-settings sees it (only used to read the environment)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )


@dataclass(slots=True)
class LoadedConfig:
    """The validated config, the file it came from and the source of each key."""

    config: HostConfig
    path: Path | None
    sources: dict[str, str] = field(default_factory=dict)
    """Dotted key path -> ``default``, ``file:<path>`` or ``env:<VARIABLE>``."""
    warnings: list[str] = field(default_factory=list)
    """What loading noticed but did not refuse (unknown ``AGENTHOST_*`` variables), for the
    caller to log once logging is configured."""

    def source_of(self, key: str) -> str:
        """Where `key` (dotted) got its value: its own entry; for a key set as a mapping
        (``data_dir: {a: 1}``), where the first of its keys came from; else its nearest
        parent's (``plugins: {}`` in a file)."""
        if key in self.sources:
            return self.sources[key]
        below = [source for name, source in self.sources.items() if name.startswith(f"{key}.")]
        if below:
            return below[0]
        path = key.rpartition(".")[0]
        while path:
            if path in self.sources:
                return self.sources[path]
            path = path.rpartition(".")[0]
        return "default"


def config_path(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: explicit, else $AGENTHOST_CONFIG, else the default if it exists."""
    if explicit is not None:
        return Path(explicit)
    if environ.get(f"{ENV_PREFIX}CONFIG"):
        return Path(environ[f"{ENV_PREFIX}CONFIG"])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in `path`; errors name the file and, when known, the line and key.

    Read like character files (`host.parsing`): UTF-8 with or without a byte order mark or
    UTF-16/32; nesting, alias expansion and integer length bounded."""
    try:
        text = decode(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except ParseError as exc:
        raise ConfigError(f"cannot read config file {exc.describe(str(path))}") from None
    try:
        data = load_yaml(text)
    except ParseError as exc:
        where = f"{path}:{exc.line}" if exc.line is not None else str(path)
        key = f" at {exc.path}" if exc.path else ""
        raise ConfigError(f"invalid YAML in {where}{key}: {exc.reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``AGENTHOST_*`` variables as nested config values (pydantic-settings' parsing).

    Lists and mappings are JSON; a variable that is not valid JSON where JSON is expected, or
    whose JSON (or ``__`` path) nests deeper than `host.parsing.MAX_DEPTH`, is a `ConfigError`
    naming the variable (pydantic-settings only names the top-level section)."""
    variables = {k.lower(): v for k, v in environ.items() if k.upper().startswith(ENV_PREFIX)}
    problems = [p for name, value in sorted(variables.items()) for p in _over_limits(name, value)]
    if problems:
        raise ConfigError(problems_message(problems))
    try:
        values = _parse_env(variables)
    except SettingsError:
        for name, value in sorted(variables.items()):
            try:
                _parse_env({name: value})
            except SettingsError as exc:
                cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
                problems.append(
                    f"  {_key_of(name)} (from {name.upper()}): not valid JSON{cause}; lists"
                    " and mappings are written as JSON,"
                    """ e.g. AGENTHOST_PLUGINS__DISABLED='["openai"]'"""
                )
        raise ConfigError(problems_message(problems)) from None
    values.pop("config", None)
    return values


def _key_of(variable: str) -> str:
    return variable.lower().removeprefix(ENV_PREFIX.lower()).replace("__", ".")


def _over_limits(name: str, value: str) -> list[str]:
    """The problem of a variable nested too deep, by its name's ``__`` parts or its JSON."""
    if name.count("__") > MAX_DEPTH:
        shown = name.upper() if len(name) <= 60 else f"{name.upper()[:60]}..."
        return [f"  {shown}: more than {MAX_DEPTH} __-separated levels"]
    if not value.lstrip().startswith(("[", "{")):
        return []
    try:
        load_json(value)
    except ParseError as exc:
        if exc.limit:
            at = f" at {exc.path}" if exc.path else ""
            return [f"  {_key_of(name)} (from {name.upper()}): its JSON{at}: {exc.reason}"]
    return []


def _parse_env(variables: dict[str, str]) -> dict[str, Any]:
    source = _env_source()
    source.env_vars = variables
    return source()


def _env_source() -> EnvSettingsSource:
    return EnvSettingsSource(
        _EnvSettings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )


def _paths(data: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _paths(value, f"{path}.")
        else:
            yield path


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_name(path: str) -> str:
    return ENV_PREFIX + path.replace(".", "__").replace("-", "_").upper()


def _canonical(data: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`data` with each key spelled as `model` shows it (a field's alias if it has one:
    ``logging.json``, also accepted as ``json_lines``), so sources and ``config show`` agree."""
    names: dict[str, tuple[str, Any]] = {}
    for name, info in model.model_fields.items():
        shown = info.alias or name
        names[name] = names[shown] = (shown, info.annotation)
    out: dict[str, Any] = {}
    for key, value in data.items():
        shown, annotation = names.get(key, (key, None))
        if (
            isinstance(value, Mapping)
            and isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
        ):
            value = _canonical(value, annotation)
        out[shown] = value
    return out


def _match_plugin_spelling(file_data: Mapping[str, Any], env_data: dict[str, Any]) -> None:
    """Environment variables cannot spell ``-``: ``AGENTHOST_PLUGINS__MY_PLUGIN__X`` lands in
    section ``my_plugin``; when the file spells that plugin's section ``my-plugin``, move the
    variables there, so they merge with (and override) the file's values."""
    file_plugins, env_plugins = file_data.get("plugins"), env_data.get("plugins")
    if not isinstance(file_plugins, Mapping) or not isinstance(env_plugins, dict):
        return
    for spelling in file_plugins:
        key = str(spelling).replace("-", "_")
        if key != spelling and key in env_plugins:
            env_plugins[spelling] = env_plugins.pop(key)


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_source: str = "override",
) -> LoadedConfig:
    """Read, merge and validate the configuration (see the module docstring). `overrides`
    (command-line options) win over everything; errors and sources name them
    `overrides_source`."""
    environ = os.environ if environ is None else environ
    file = config_path(path, environ)
    file_data = _canonical(read_yaml(file) if file is not None else {}, HostConfig)
    env_data = _canonical(read_env(environ), HostConfig)
    _match_plugin_spelling(file_data, env_data)
    override_data = _canonical(overrides or {}, HostConfig)
    sources: dict[str, str] = {}
    for key in _paths(file_data):
        _record(sources, key, f"file:{file}")
    variables = {
        _key_of(name).replace("-", "_"): name.upper()
        for name in environ
        if name.upper().startswith(ENV_PREFIX)
    }
    for key in _paths(env_data):
        _record(sources, key, f"env:{_variable_of(key, variables)}")
    merged = _merge(_merge(file_data, env_data), override_data)
    for key in _paths(override_data):
        _record(sources, key, overrides_source)
    nul = list(_nul_keys(merged))
    if nul:
        loaded = LoadedConfig(HostConfig(), file, sources)
        raise ConfigError(problems_message([_nul_problem(key, loaded) for key in nul]))
    try:
        config = HostConfig.model_validate(merged)
    except ValidationError as exc:
        loaded = LoadedConfig(HostConfig(), file, sources)
        raise ConfigError(_describe(exc, loaded)) from None
    return LoadedConfig(config, file, sources, unknown_variables(environ))


def _variable_of(key: str, variables: Mapping[str, str]) -> str:
    """The variable that set `key`: its own, or a parent's holding JSON."""
    path = key.lower().replace("-", "_")
    while path:
        if path in variables:
            return variables[path]
        path = path.rpartition(".")[0]
    return _env_name(key)


def _record(sources: dict[str, str], key: str, source: str) -> None:
    """`key` comes from `source`, and so does what it replaced: a value an earlier source gave
    to it or to a parent (``plugins.disabled: []`` in the file, a mapping in a variable)."""
    for name in [n for n in sources if key == n or key.startswith(f"{n}.")]:
        del sources[name]
    sources[key] = source


def _nul_keys(data: Any, prefix: str = "") -> Iterator[str]:
    """The dotted keys whose name or value (in a list too) holds a NUL character."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from _nul_keys(value, f"{prefix}{'.' if prefix else ''}{key}")
    elif isinstance(data, list | tuple):
        if any(next(_nul_keys(item, prefix), None) is not None for item in data):
            yield prefix
    elif "\0" in prefix or (isinstance(data, str) and "\0" in data):
        yield prefix


def _nul_problem(key: str, loaded: LoadedConfig) -> str:
    source = loaded.source_of(key)
    shown = key.replace("\0", "\\0")
    return (
        f"  {shown} (from {source.partition(':')[2] or source}): holds a NUL character (\\0),"
        " which no file name or setting can contain"
    )


def _top_level_names() -> set[str]:
    return {
        name for key, info in HostConfig.model_fields.items() for name in (key, info.alias) if name
    }


def _setting_variables(model: type[BaseModel] = HostConfig, prefix: str = "") -> list[str]:
    """Every settings variable's name (``AGENTHOST_HTTP__PORT``, ...): the candidates for
    "did you mean"."""
    names = []
    for key, info in model.model_fields.items():
        path = f"{prefix}{info.alias or key}"
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            names += _setting_variables(info.annotation, f"{path}.")
        else:
            names.append(_env_name(path))
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``AGENTHOST_*`` variable that is no setting (a typo goes unnoticed
    otherwise: pydantic-settings reads only the names it knows), with the closest known name.

    Unknown keys inside a section (``AGENTHOST_HTTP__PROT``) are validation errors already;
    plugin sections (``AGENTHOST_PLUGINS__<NAME>__...``) are checked against the installed
    plugins once they are discovered (`host.loader.select`)."""
    top = {name.lower() for name in _top_level_names()}
    known = [name.removeprefix(ENV_PREFIX) for name in _setting_variables()]
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_VARIABLES:
            continue
        if upper.startswith(TEST_PREFIX):
            continue
        first, _, rest = upper.removeprefix(ENV_PREFIX).partition("__")
        if first.lower() in top:
            continue
        # compared without the prefix all names share, which would make any two alike
        guess = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), known, n=1, cutoff=0.75)
        if not guess and rest:
            section = difflib.get_close_matches(first.lower(), sorted(top), n=1, cutoff=0.6)
            guess = [f"{section[0].upper()}__{rest}"] if section else []
        hint = f"; did you mean {ENV_PREFIX}{guess[0]}?" if guess else ""
        warnings.append(f"environment variable {name} is not a setting and is ignored{hint}")
    return warnings


def _describe(exc: ValidationError, loaded: LoadedConfig) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        source = loaded.source_of(key)
        where = source.partition(":")[2] or source
        reason = error["msg"]
        if error["type"] == "extra_forbidden":
            reason = "unknown key"
        elif error["type"] == "dict_type" and len(error["loc"]) == 2 and key.startswith("plugins."):
            reason = (
                "a plugin's settings section must be a mapping (the lists of plugins are"
                " plugins.enabled and plugins.disabled)"
            )
        lines.append(f"  {key} (from {where}): {reason}")
    return problems_message(lines)


def problems_message(lines: list[str]) -> str:
    """The text of a `ConfigError` for these ``  key (from source): reason`` lines."""
    count = len(lines)
    return f"invalid configuration ({count} problem{'s' if count > 1 else ''}):\n" + "\n".join(
        lines
    )


def plugin_settings(
    model: type[BaseModel], name: str, config: HostConfig, loaded: LoadedConfig | None = None
) -> BaseModel:
    """Validate plugin `name`'s section ``plugins.<name>`` with its settings `model`."""
    data = _decode_env_json(model, name, config.plugins.section(name), loaded)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(["plugins", name, *(str(p) for p in error["loc"])])
            if error["type"] == "missing":
                file = loaded.path if loaded is not None and loaded.path else "the config file"
                problems.append(f"  {key}: required; set it in {file} or {_env_name(key)}")
                continue
            source = _plugin_source(loaded, name, key) if loaded is not None else "config"
            problems.append(f"  {key} (from {source.partition(':')[2] or source}): {error['msg']}")
        raise ConfigError(f"invalid settings for plugin {name}:\n" + "\n".join(problems)) from None


def _plugin_source(loaded: LoadedConfig, name: str, key: str) -> str:
    """Where plugin setting `key` (``plugins.<name>...``) came from; the environment spells a
    ``my-plugin`` section ``my_plugin``."""
    source = loaded.source_of(key)
    if source == "default" and "-" in name:
        source = loaded.source_of(key.replace(name, name.replace("-", "_"), 1))
    return source


def _decode_env_json(
    model: type[BaseModel], name: str, data: dict[str, Any], loaded: LoadedConfig | None
) -> dict[str, Any]:
    """Lists and mappings set by variables, decoded from JSON as pydantic-settings decodes the
    host's own (it read plugin sections before any plugin model was known, so as text)."""
    if loaded is None:
        return data
    source = _env_source()
    for key, info in model.model_fields.items():
        shown = info.alias or key
        value = data.get(shown)
        if not isinstance(value, str):
            continue
        if not _plugin_source(loaded, name, f"plugins.{name}.{shown}").startswith("env:"):
            continue
        if source.field_is_complex(info):
            # not JSON: validation reports the value (too deep was refused at load_config)
            with contextlib.suppress(ValueError, RecursionError):
                data[shown] = source.decode_complex_value(shown, info, value)
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"http": {"port": 1}}`` -> ``{"http.port": 1}`` (for ``config show``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out
