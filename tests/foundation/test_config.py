"""Config: precedence, env overrides, errors that name file/variable and key, secrets masked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loguru import logger
from pydantic import BaseModel, ConfigDict, SecretStr

from contracts.config import LoggingSettings
from host.config import (
    ConfigError,
    flatten,
    load_config,
    masked,
    plugin_settings,
    secret_paths,
    secret_values,
)
from host.logs import configure_logging, plugin_logger, redact


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agenthost.yaml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 8000\n  host: 0.0.0.0\nlogging:\n  level: debug\n")
    loaded = load_config(path, environ={"AGENTHOST_HTTP__PORT": "9000"})
    config = loaded.config
    assert config.http.port == 9000 and config.http.host == "0.0.0.0"
    assert config.logging.level == "DEBUG"
    assert config.agents.history == 10
    assert loaded.source_of("http.port") == "env:AGENTHOST_HTTP__PORT"
    assert loaded.source_of("http.host") == f"file:{path}"
    assert loaded.source_of("agents.history") == "default"


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "dev: true\n")
    assert load_config(environ={"AGENTHOST_CONFIG": str(path)}).config.dev is True


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 1\n   host: [x\n")
    with pytest.raises(ConfigError, match=rf"invalid YAML in {path}:3"):
        load_config(path, environ={})


def test_invalid_values_name_key_and_source_and_hide_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, "http:\n  port: 99999\n  api_key: hunter2-secret\nbogus: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"AGENTHOST_AGENTS__HISTORY": "-3"})
    text = str(info.value)
    assert f"http.port (from {path})" in text
    assert "less than or equal to 65535" in text
    assert f"bogus (from {path}): unknown key" in text
    assert "agents.history (from AGENTHOST_AGENTS__HISTORY)" in text
    assert "3 problems" in text
    assert "hunter2" not in text


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_plugin_sections_from_file_and_env() -> None:
    class WeatherSettings(BaseModel):
        city: str = "Paris"
        api_key: SecretStr
        retries: int = 2

    loaded = load_config(
        None,
        environ={
            "AGENTHOST_PLUGINS__WEATHER__API_KEY": "abcd-1234",
            "AGENTHOST_PLUGINS__WEATHER__RETRIES": "5",
        },
    )
    settings = plugin_settings(WeatherSettings, "weather", loaded.config, loaded)
    assert isinstance(settings, WeatherSettings)
    assert settings.retries == 5 and settings.api_key.get_secret_value() == "abcd-1234"
    shown = json.dumps(masked(loaded.config))
    assert "abcd-1234" not in shown and "**********" in shown

    bad = load_config(None, environ={"AGENTHOST_PLUGINS__WEATHER__RETRIES": "many"})
    with pytest.raises(ConfigError) as info:
        plugin_settings(WeatherSettings, "weather", bad.config, bad)
    assert "plugins.weather.retries (from AGENTHOST_PLUGINS__WEATHER__RETRIES)" in str(info.value)
    assert "plugins.weather.api_key" in str(info.value)


def test_disabled_list_from_env_json() -> None:
    loaded = load_config(None, environ={"AGENTHOST_PLUGINS__DISABLED": '["openai", "audit"]'})
    assert loaded.config.plugins.disabled == ["openai", "audit"]


_keys = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_trees = st.recursive(
    st.integers() | st.text(max_size=5),
    lambda children: st.dictionaries(_keys, children, min_size=1, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(_keys, _trees, max_size=4))
def test_flatten_keeps_every_leaf(tree: dict[str, object]) -> None:
    flat = flatten(tree)
    for path, value in flat.items():
        node: object = tree
        for part in path.split("."):
            assert isinstance(node, dict)
            node = node[part]
        assert node == value


def test_plugin_log_lines_carry_the_plugin_name_and_secrets_are_scrubbed() -> None:
    sink = io.StringIO()
    configure_logging(LoggingSettings(level="INFO", json=True), sink=sink)
    try:
        redact(["sk-live-123456"])
        plugin_logger("weather").info("calling with key {}", "sk-live-123456")
        logger.debug("hidden at INFO")
        logger.info("engine line")
    finally:
        configure_logging()
    records = [json.loads(line)["record"] for line in sink.getvalue().splitlines()]
    assert [(r["extra"]["plugin"], r["message"]) for r in records] == [
        ("weather", "calling with key **********"),
        ("host", "engine line"),
    ]


class VendorError(Exception):
    """An exception whose text is not its arguments (as many libraries' are)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def __str__(self) -> str:
        return f"vendor refused key {self.key}"


def _connect(api_key: str) -> None:
    try:
        raise VendorError(api_key)
    except VendorError as exc:
        raise RuntimeError(f"cannot connect with {api_key}") from exc


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_logged_exception_has_its_secrets_scrubbed_too(as_json: bool) -> None:
    """``opt(exception=...)``: the exception's text, its cause's, and the variables beside the
    traceback's lines never show a secret; the rest of the traceback is as loguru shows it."""
    sink = io.StringIO()
    configure_logging(LoggingSettings(level="INFO", json=as_json), sink=sink)
    secret = "sk-live-" + "7" * 12
    try:
        redact([secret])
        try:
            _connect(secret)
        except RuntimeError as exc:
            plugin_logger("weather").opt(exception=exc).error("setup failed")
    finally:
        configure_logging()
    out = sink.getvalue()
    assert secret not in out
    text = json.loads(out)["text"] if as_json else out
    assert "RuntimeError: cannot connect with **********" in text
    assert f"{__name__}.VendorError: vendor refused key **********" in text
    assert "The above exception was the direct cause of the following exception" in text
    assert 'raise RuntimeError(f"cannot connect with {api_key}") from exc' in text


def test_config_option_beats_the_environment_variable(tmp_path: Path) -> None:
    chosen = write(tmp_path, "dev: true\n")
    other = tmp_path / "other.yaml"
    other.write_text("dev: false\n")
    loaded = load_config(chosen, environ={"AGENTHOST_CONFIG": str(other)})
    assert loaded.path == chosen and loaded.config.dev is True


def test_overrides_win_and_are_named_by_their_source(tmp_path: Path) -> None:
    path = write(tmp_path, "logging:\n  level: info\n")
    environ = {"AGENTHOST_LOGGING__LEVEL": "warning"}
    loaded = load_config(
        path, environ=environ, overrides={"logging": {"level": "debug"}}, overrides_source="cli"
    )
    assert loaded.config.logging.level == "DEBUG"
    assert loaded.source_of("logging.level") == "cli"
    with pytest.raises(ConfigError, match=r"logging\.level \(from cli\): Input should be"):
        load_config(
            path, environ={}, overrides={"logging": {"level": "loud"}}, overrides_source="cli"
        )


def test_unknown_nested_environment_key_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"AGENTHOST_HTTP__PROT": "80"})
    assert "http.prot (from AGENTHOST_HTTP__PROT): unknown key" in str(info.value)


@pytest.mark.parametrize("spelling", ["json", "json_lines"])
def test_an_aliased_key_is_shown_and_sourced_by_its_alias(tmp_path: Path, spelling: str) -> None:
    path = write(tmp_path, f"logging:\n  {spelling}: true\n")
    loaded = load_config(path, environ={})
    assert loaded.config.logging.json_lines is True
    assert loaded.source_of("logging.json") == f"file:{path}"
    shown = flatten(masked(loaded.config))
    assert shown["logging.json"] is True and "logging.json_lines" not in shown
    from_env = load_config(None, environ={f"AGENTHOST_LOGGING__{spelling.upper()}": "true"})
    assert from_env.config.logging.json_lines is True
    assert from_env.source_of("logging.json").startswith("env:AGENTHOST_LOGGING__JSON")


def test_environment_merges_into_a_hyphenated_plugin_section(tmp_path: Path) -> None:
    class Settings(BaseModel):
        city: str
        retries: int = 1

    path = write(tmp_path, "plugins:\n  my-weather:\n    city: Paris\n    retries: 2\n")
    loaded = load_config(path, environ={"AGENTHOST_PLUGINS__MY_WEATHER__RETRIES": "7"})
    settings = plugin_settings(Settings, "my-weather", loaded.config, loaded)
    assert isinstance(settings, Settings)
    assert (settings.city, settings.retries) == ("Paris", 7)
    assert loaded.source_of("plugins.my-weather.retries") == (
        "env:AGENTHOST_PLUGINS__MY_WEATHER__RETRIES"
    )
    only_env = load_config(None, environ={"AGENTHOST_PLUGINS__MY_WEATHER__RETRIES": "x"})
    with pytest.raises(ConfigError) as info:
        plugin_settings(Settings, "my-weather", only_env.config, only_env)
    assert "plugins.my-weather.retries (from AGENTHOST_PLUGINS__MY_WEATHER__RETRIES)" in str(
        info.value
    )


def test_a_plugin_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  weather:\n  disable: [openai]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        "invalid configuration (1 problem):\n"
        f"  plugins.disable (from {path}): a plugin's settings section must be a mapping"
        " (the lists of plugins are plugins.enabled and plugins.disabled)"
    )
    empty = load_config(write(tmp_path, "plugins:\n  weather:\n"), environ={})
    assert empty.config.plugins.section("weather") == {}


def test_secret_values_finds_typed_and_secret_named_settings() -> None:
    loaded = load_config(
        None,
        environ={
            "AGENTHOST_HTTP__API_KEY": "http-key-1",
            "AGENTHOST_PLUGINS__OPENAI__API_KEY": "sk-openai-2",
            "AGENTHOST_PLUGINS__OPENAI__MODEL": "gpt-x",
        },
    )
    assert sorted(secret_values(loaded.config)) == ["http-key-1", "sk-openai-2"]


def test_secret_values_in_validated_settings_and_raw_sections() -> None:
    class Settings(BaseModel):
        model_config = ConfigDict(extra="allow")
        token: str = "plain-token-1"  # a secret by name, though not typed SecretStr
        password: SecretStr = SecretStr("typed-pw-2")
        redact_keys: tuple[str, ...] = ("api_key", "token")  # key names: data, not secrets

    settings = Settings.model_validate({"api_keys": ["raw-key-3", "raw-key-4"]})
    assert sorted(secret_values(settings)) == [
        "plain-token-1",
        "raw-key-3",
        "raw-key-4",
        "typed-pw-2",
    ]
    assert secret_values({"secrets": ["raw-5"], "names": ["api_key"]}) == ["raw-5"]


def test_malformed_json_in_a_variable_names_the_variable() -> None:
    environ = {
        "AGENTHOST_PLUGINS__DISABLED": "openai",  # a list must be JSON
        "AGENTHOST_SERVICES": "{database: postgres",
        "AGENTHOST_HTTP__HOST": "0.0.0.0",  # a plain string field: fine
    }
    with pytest.raises(ConfigError) as info:
        load_config(None, environ=environ)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid configuration (2 problems):"
    assert lines[1].startswith(
        "  plugins.disabled (from AGENTHOST_PLUGINS__DISABLED): not valid JSON: Expecting value"
    )
    assert lines[2].startswith("  services (from AGENTHOST_SERVICES): not valid JSON: ")
    assert lines[2].endswith("""e.g. AGENTHOST_PLUGINS__DISABLED='["openai"]'""")


def test_secret_paths_find_secret_fields_by_type() -> None:
    class Inner(BaseModel):
        auth: SecretStr
        label: str = ""

    class Settings(BaseModel):
        passphrase: SecretStr | None = None
        inner: Inner | None = None
        name: str = ""

    assert secret_paths(Settings) == ["passphrase", "inner.auth"]


def test_plugin_lists_and_mappings_from_variables_are_json() -> None:
    class Settings(BaseModel):
        cities: list[str] = []
        limits: dict[str, int] = {}
        label: str = ""

    loaded = load_config(
        None,
        environ={
            "AGENTHOST_PLUGINS__WEATHER__CITIES": '["Lyon", "Oslo"]',
            "AGENTHOST_PLUGINS__WEATHER__LIMITS__DAILY": "3",
            "AGENTHOST_PLUGINS__WEATHER__LABEL": "[beta]",  # a string field stays text
        },
    )
    settings = plugin_settings(Settings, "weather", loaded.config, loaded)
    assert settings == Settings(cities=["Lyon", "Oslo"], limits={"daily": 3}, label="[beta]")
    bad = load_config(None, environ={"AGENTHOST_PLUGINS__WEATHER__CITIES": "Lyon, Oslo"})
    with pytest.raises(ConfigError, match=r"plugins\.weather\.cities \(from AGENTHOST_PLUGINS__"):
        plugin_settings(Settings, "weather", bad.config, bad)
