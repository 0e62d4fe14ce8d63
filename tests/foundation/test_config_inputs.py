"""Hostile and careless configuration: a NUL in a path, YAML nested 5,000 deep or an alias
bomb, a variable holding JSON 3,000 deep, a mapping where a path goes, files in other
encodings, misspelt ``AGENTHOST_*`` variables. Each is a `ConfigError` naming the file or
variable, the key and the reason (exit code 2 from the command line, never a traceback), or a
warning with the closest known name. Fuzzed with hypothesis (bounded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from contracts.config import HostConfig, PluginsSettings
from contracts.plugin import Manifest, Plugin
from host.config import ConfigError, load_config, unknown_variables
from host.di import Container
from host.discovery import Discovered
from host.loader import Loader, select
from host.parsing import load_yaml

ROOT = Path(__file__).resolve().parents[2]
AGENTHOST = Path(sys.executable).with_name("agenthost")
DEEP_JSON = "[" * 3_000 + "]" * 3_000


def write(tmp_path: Path, text: str | bytes, name: str = "agenthost.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def config_error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ or {})
    return str(info.value)


def test_a_nul_character_in_a_path_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'logging:\n  file: "logs/\\0agenthost.log"\n')
    assert config_error(path) == (
        "invalid configuration (1 problem):\n"
        f"  logging.file (from {path}): holds a NUL character (\\0), which no file name or"
        " setting can contain"
    )
    listed = write(tmp_path, 'plugins:\n  weather:\n    cities: [Oslo, "a\\0b"]\n', "two.yaml")
    assert f"plugins.weather.cities (from {listed}): holds a NUL character" in config_error(listed)


def test_yaml_nested_5000_deep_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 1\nplugins:\n  x:\n    y: " + "[" * 5_000 + "]" * 5_000)
    assert config_error(path) == (
        f"invalid YAML in {path}:5 at plugins.x.y[0][0]...: nested deeper than 100 levels"
    )


def test_a_key_given_twice_names_file_lines_and_where(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys silently: half a setting would be ignored."""
    path = write(tmp_path, "http: {port: 1111}\nlogging: {level: INFO}\nhttp: {port: 2222}\n")
    assert config_error(path) == (
        f"invalid YAML in {path}:3: key 'http' is given twice in the same mapping (lines 1 and"
        " 3); keep one"
    )
    nested = write(tmp_path, "plugins:\n  weather: {city: Oslo, city: Bergen}\n", "two.yaml")
    assert config_error(nested) == (
        f"invalid YAML in {nested}:2 at plugins.weather: key 'city' is given twice in the same"
        " mapping (lines 2 and 2); keep one"
    )
    deep = "base: &b\n  a: 1\nouter:\n  inner: &x\n    <<: *b\n    a: 2\ny:\n  <<: *x\n  c: 3\n"
    assert load_yaml(deep)["outer"] == {"inner": {"a": 2}}  # an anchor merged twice: no duplicate
    merged = write(tmp_path, "x: &base {level: INFO}\nlogging:\n  <<: *base\n  level: DEBUG\n")
    with pytest.raises(ConfigError) as info:  # an override of a merged key is no duplicate
        load_config(merged, environ={})
    assert "given twice" not in str(info.value) and "unknown key" in str(info.value)


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["plugins:", "  x:", "    a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    text = write(tmp_path, "\n".join(lines) + "\n")
    message = config_error(text)
    assert message.startswith(f"invalid YAML in {text} at plugins.x.a7[")
    assert message.endswith("holds more than 100,000 values (YAML aliases expanded, or data that"
                            " contains itself)")  # fmt: skip


def test_an_overlong_integer_in_the_file_names_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: " + "9" * 5_000 + "\n")
    assert config_error(path).startswith(
        f"invalid YAML in {path}:2 at http.port: an integer of 5000 digits"
    )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("AGENTHOST_PLUGINS__DISABLED", DEEP_JSON, "its JSON: nested deeper than 100 levels"),
        (
            "AGENTHOST_PLUGINS__WEATHER__CITIES",
            "[" * 150 + "]" * 150,
            "its JSON at [0][0][0][0][0]...: nested deeper than 100 levels",
        ),
        (
            "AGENTHOST_SERVICES",
            '{"database": ' + "1" * 5_000 + "}",
            "its JSON at database: an integer of 5000 digits",
        ),
    ],
    ids=["disabled-3000-deep", "plugin-setting-150-deep", "long-integer"],
)
def test_a_variable_over_the_limits_is_named(variable: str, value: str, problem: str) -> None:
    key = variable.removeprefix("AGENTHOST_").lower().replace("__", ".")
    message = config_error(None, {variable: value})
    assert message.startswith(f"invalid configuration (1 problem):\n  {key} (from {variable}): ")
    assert problem in message


def test_a_variable_with_too_many_levels_is_named() -> None:
    variable = "AGENTHOST_PLUGINS__" + "A__" * 2_000 + "B"
    message = config_error(None, {variable: "1"})
    assert f"{variable[:60]}...: more than 100 __-separated levels" in message


def test_a_mapping_where_a_path_goes_is_reported_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir: {a: 1}\n")
    assert f"data_dir (from {path}): Input is not a valid path" in config_error(path)
    loaded = load_config(write(tmp_path, "dev: false\n"), environ={"AGENTHOST_HTTP__PORT": "1"})
    assert loaded.source_of("http") == "env:AGENTHOST_HTTP__PORT"
    assert loaded.source_of("http.host") == "default"  # a sibling's source is not the key's
    listed = write(tmp_path, "plugins:\n  disabled: []\n")
    message = config_error(listed, {"AGENTHOST_PLUGINS__DISABLED": '{"a": 1}'})
    assert "plugins.disabled (from AGENTHOST_PLUGINS__DISABLED): Input should be a valid list" in (
        message
    )


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le"])
def test_config_files_in_utf16_or_with_a_bom_load(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path, "http:\n  host: hôte.local\n".encode(encoding))
    assert load_config(path, environ={}).config.http.host == "hôte.local"


def test_a_latin1_config_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  host: hôte\n".encode("latin-1"))
    assert config_error(path).startswith(
        f"cannot read config file {path} (line 2): not UTF-8 text: byte 0xf4"
    )


# -- unknown variables ----------------------------------------------------------------------


def test_unknown_variables_are_warned_with_the_closest_name() -> None:
    environ = {
        "AGENTHOST_HTTP_PORT": "8000",
        "AGENTHOST_DATADIR": "/srv",
        "AGENTHOST_PLUGIN__OPENAI__API_KEY": "sk-x",
        "AGENTHOST_FROBNICATE": "1",
        # known: settings, plugin sections (checked at discovery), other tools' variables
        "AGENTHOST_HTTP__PORT": "8000",
        "AGENTHOST_PLUGINS__WEATHER__CITY": "Oslo",
        "AGENTHOST_CONFIG": "",
        "AGENTHOST_EVENT_STORE": "x",
        "AGENTHOST_TEST_BACKENDS": "sqlite",
        "HOME": "/root",
    }
    loaded = load_config(None, environ=environ)
    assert (
        loaded.warnings
        == unknown_variables(environ)
        == [
            "environment variable AGENTHOST_DATADIR is not a setting and is ignored; did you mean"
            " AGENTHOST_DATA_DIR?",
            "environment variable AGENTHOST_FROBNICATE is not a setting and is ignored",
            "environment variable AGENTHOST_HTTP_PORT is not a setting and is ignored; did you mean"
            " AGENTHOST_HTTP__PORT?",
            "environment variable AGENTHOST_PLUGIN__OPENAI__API_KEY is not a setting and is"
            " ignored; did you mean AGENTHOST_PLUGINS__OPENAI__API_KEY?",
        ]
    )


def test_plugin_variables_are_checked_against_the_installed_plugins() -> None:
    """A section for an installed plugin is quiet; one for no installed plugin is warned at
    discovery naming the variable and the closest installed plugin (a plugin installed later
    gets its settings then: nothing is refused)."""
    environ = {"AGENTHOST_PLUGINS__WEATHER__CITY": "Oslo", "AGENTHOST_PLUGINS__WAETHER__X": "1"}
    loaded = load_config(None, environ=environ)
    assert loaded.warnings == []
    discovered = [Discovered(name="weather", target="w:W", distribution=None, version=None)]
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        select(discovered, loaded.config, loaded)
    finally:
        logger.remove(sink)
    assert lines == [
        "config plugins.waether (from AGENTHOST_PLUGINS__WAETHER__X): no installed plugin is"
        " called waether, its settings are unused (did you mean weather?); installed: weather"
    ]
    assert HostConfig(plugins=PluginsSettings.model_validate({})).plugins.section("x") == {}


# -- fuzz -----------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
_yaml_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_sections = st.sampled_from([*HostConfig.model_fields, "plugins", "bogus"])


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    """YAML: a config-shaped document (known sections, odd values), text with YAML syntax in
    it, or a document with one value replaced by deep nesting, a long integer or a NUL."""
    kind = draw(st.sampled_from(["document", "text", "hostile"]))
    if kind == "text":
        return draw(
            st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"\n #,?\\0\t")), max_size=60)
        )
    data = draw(st.dictionaries(_sections, _yaml_values, max_size=4))
    text = yaml.safe_dump(data, allow_unicode=True)
    if kind == "hostile":
        depth = draw(st.sampled_from([99, 101, 5_000]))
        value = draw(
            st.sampled_from(
                ["[" * depth + "]" * depth, "9" * 4_400, '"a\\0b"', "2024-13-45", "*nothing"]
            )
        )
        text += f"{draw(_sections)}: {value}\n"
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_texts())
def test_fuzzed_config_files_load_or_name_the_file(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "agenthost.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert str(path) in str(exc)


_names = st.sampled_from(
    [
        "AGENTHOST_HTTP__PORT",
        "AGENTHOST_HTTP",
        "AGENTHOST_PLUGINS__DISABLED",
        "AGENTHOST_PLUGINS__ENABLED",
        "AGENTHOST_PLUGINS__WEATHER__CITIES",
        "AGENTHOST_PLUGINS",
        "AGENTHOST_SERVICES",
        "AGENTHOST_DATA_DIR",
        "AGENTHOST_LOGGING__LEVEL",
        "AGENTHOST_AGENTS__CHARACTERS",
        "AGENTHOST_AGENTS__HISTORY",
        "AGENTHOST_MODELS",
        "AGENTHOST_METRICS",
    ]
) | st.from_regex(r"AGENTHOST_[A-Z][A-Z_]{0,30}", fullmatch=True)
_env_values = (
    st.text(max_size=20).map(lambda t: t.replace("\0", ""))
    | st.builds(
        lambda d, b: b[0] * d + b[1] * d, st.integers(0, 3_000), st.sampled_from(["[]", "{}"])
    )
    | st.builds(lambda n: "[" + "9" * n + "]", st.integers(4_000, 5_000))
    | _yaml_values.map(json.dumps)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_names, _env_values, min_size=1, max_size=3))
def test_fuzzed_variables_load_or_name_the_variable(environ: dict[str, str]) -> None:
    try:
        load_config(os.devnull, environ=environ)  # no file: every value is a variable's
    except ConfigError as exc:
        assert any(f"(from {name})" in str(exc) or name in str(exc) for name in environ), str(exc)


# -- through the command line --------------------------------------------------------------


def agenthost(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHOST_")}
    return subprocess.run(
        [str(AGENTHOST), *args],
        cwd=cwd,
        env={**environ, "AGENTHOST_DATA_DIR": str(cwd / "data"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ('logging:\n  file: "\\0"\n', {}, "logging.file (from {file}): holds a NUL character"),
        ("a: " + "[" * 5_000 + "]" * 5_000 + "\n", {}, "invalid YAML in {file}:1 at a[0][0]"),
        (
            "",
            {"AGENTHOST_PLUGINS__DISABLED": DEEP_JSON},
            "plugins.disabled (from AGENTHOST_PLUGINS__DISABLED): its JSON: nested deeper",
        ),
        ("logging:\n  file: logs\n", {}, "logging.file (from {file}): cannot write the log file"),
    ],
    ids=["nul-log-file", "yaml-5000-deep", "env-3000-deep", "log-file-is-a-directory"],
)
def test_the_command_line_exits_2_naming_where(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    (tmp_path / "logs").mkdir()
    file = write(tmp_path, text, "my.yaml")
    done = agenthost(tmp_path, env, "--config", str(file), "config", "show")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert expected.format(file=file) in done.stderr


def test_the_command_line_warns_of_a_misspelt_variable(tmp_path: Path) -> None:
    done = agenthost(tmp_path, {"AGENTHOST_HTTP_PORT": "9"}, "config", "show", "--json")
    assert done.returncode == 0, done.stderr
    assert (
        "WARNING | host | environment variable AGENTHOST_HTTP_PORT is not a setting and is"
        " ignored; did you mean AGENTHOST_HTTP__PORT?"
    ) in done.stderr


class _NoSettings(Plugin):
    manifest: ClassVar[Manifest] = Manifest(name="plain")


async def test_a_section_for_a_plugin_without_settings_is_warned(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  plain:\n    colour: red\n")
    loaded = load_config(path, environ={})
    container = Container()
    loader = Loader(container, [container], config=loaded)
    item = Discovered("plain", "t:P", None, None, _NoSettings, _NoSettings.manifest)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        assert await loader.load(item) is not None
    finally:
        logger.remove(sink)
        await loader.unload_all()
    assert lines == [
        f"config plugins.plain (from {path}): plugin plain declares no settings, this section"
        " is unused"
    ]
