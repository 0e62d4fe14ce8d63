"""Logging on loguru: one configured sink, plugin-bound loggers, secrets scrubbed.

Every record carries ``extra["plugin"]`` (``host`` for the engine's own lines), so a plugin's
lines can be filtered by name; `plugin_logger` hands a plugin its bound logger. Secret values
the config holds are registered with `redact` and replaced by a mask in every message, as a
last line of defence should one slip into a log call or an exception text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from loguru import logger

from contracts.config import LoggingSettings

if TYPE_CHECKING:
    from loguru import Logger as LoguruLogger
    from loguru import Record

__all__ = ["configure_logging", "plugin_logger", "redact"]

MASK = "**********"
TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "<cyan>{extra[plugin]}</cyan> | {message}"
)
_secrets: set[str] = set()


def redact(values: Iterable[str]) -> None:
    """Mask these values wherever they appear in a log message (values under 4 chars are
    ignored: masking them would garble ordinary text)."""
    _secrets.update(v for v in values if len(v) >= 4)


def _scrub(record: Record) -> None:
    record["extra"].setdefault("plugin", "host")
    if _secrets:
        message = record["message"]
        for secret in _secrets:
            if secret in message:
                message = message.replace(secret, MASK)
        record["message"] = message


def configure_logging(settings: LoggingSettings | None = None, *, sink: Any = None) -> None:
    """Replace loguru's sinks with the configured one (stderr unless `sink` is given)."""
    settings = settings or LoggingSettings()
    logger.remove()
    logger.configure(extra={"plugin": "host"}, patcher=_scrub)
    target = sink if sink is not None else sys.stderr
    colorize = None if sink is None else False
    if settings.json_lines:
        logger.add(target, level=settings.level, serialize=True, colorize=False)
    else:
        logger.add(target, level=settings.level, format=TEXT_FORMAT, colorize=colorize)
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        logger.add(
            settings.file,
            level=settings.level,
            serialize=settings.json_lines,
            format=TEXT_FORMAT,
            rotation="10 MB",
            retention=5,
            colorize=False,
        )


def plugin_logger(name: str) -> LoguruLogger:
    """The logger a plugin gets: every line carries ``plugin=<name>``."""
    return logger.bind(plugin=name)
