"""Logging on loguru: one configured sink, plugin-bound loggers, secrets scrubbed.

Every record carries ``extra["plugin"]`` (``host`` for the engine's own lines), so a plugin's
lines can be filtered by name; `plugin_logger` hands a plugin its bound logger. The secrets
registered in `host.secrets` (`redact` registers more) are replaced by a mask in every message
and logged exception, as a last line of defence should one slip into a log call or an
exception text.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from loguru import logger

from contracts.config import LoggingSettings
from host.secrets import SECRETS, register, scrub

if TYPE_CHECKING:
    from loguru import Logger as LoguruLogger
    from loguru import Record

__all__ = ["configure_logging", "plugin_logger", "redact"]

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "<cyan>{extra[plugin]}</cyan> | {message}"
)


def redact(values: Iterable[str]) -> None:
    """Mask these values wherever they appear in a log message, and at every other exit
    (`host.secrets.register`; values under 4 chars are ignored: masking them would garble
    ordinary text)."""
    register(values)


def _scrub(record: Record) -> None:
    record["extra"].setdefault("plugin", "host")
    if SECRETS:
        record["message"] = scrub(record["message"])
        extra = record["extra"]
        for key, value in extra.items():
            if isinstance(value, str):
                extra[key] = scrub(value)
        exception = record["exception"]
        if exception is not None and exception.value is not None:
            value = _scrubbed(exception.value, set())
            if value is not exception.value:
                record["exception"] = exception._replace(type=type(value), value=value)


def _scrubbed(exc: BaseException, seen: set[int]) -> BaseException:
    """`exc` if neither its text nor its cause's or context's holds a secret; else a stand-in
    shown as `exc` would be (same class name, traceback and chain) with the secrets masked:
    ``opt(exception=...)`` renders the exception itself, past the message scrubbing."""
    seen.add(id(exc))
    try:
        text = str(exc)
    except Exception:
        return exc
    links = {
        link: _scrubbed(getattr(exc, link), seen)
        for link in ("__cause__", "__context__")
        if getattr(exc, link) is not None and id(getattr(exc, link)) not in seen
    }
    masked = scrub(text)
    if masked == text and all(value is getattr(exc, link) for link, value in links.items()):
        return exc
    cls = type(exc)
    twin = type(cls.__name__, (Exception,), {"__module__": cls.__module__})
    twin.__qualname__ = cls.__qualname__
    stand_in: BaseException = twin(masked)
    stand_in.__traceback__ = exc.__traceback__
    stand_in.__suppress_context__ = exc.__suppress_context__
    for link in ("__cause__", "__context__"):
        setattr(stand_in, link, links.get(link, getattr(exc, link)))
    return stand_in


class _ToLoguru(logging.Handler):
    """Standard-library records (uvicorn's: "Exception in ASGI application" with its
    traceback) into loguru, so they reach the configured sink with secrets scrubbed, instead of
    stderr as they were."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(plugin="http").opt(exception=record.exc_info).log(
            level, "{}", record.getMessage()
        )


_STDLIB_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")


def configure_logging(settings: LoggingSettings | None = None, *, sink: Any = None) -> None:
    """Replace loguru's sinks with the configured one (stderr unless `sink` is given); the
    HTTP server's standard-library loggers are routed into it."""
    settings = settings or LoggingSettings()
    logger.remove()
    logger.configure(extra={"plugin": "host"}, patcher=_scrub)
    for name in _STDLIB_LOGGERS:
        std = logging.getLogger(name)
        std.handlers = [_ToLoguru()]
        std.propagate = False
    target = sink if sink is not None else sys.stderr
    colorize = None if sink is None else False
    # diagnose=False: loguru's traceback would show the values of the variables on its lines,
    # which no scrubbing sees (its own advice for production)
    if settings.json_lines:
        logger.add(target, level=settings.level, serialize=True, colorize=False, diagnose=False)
    else:
        logger.add(
            target, level=settings.level, format=TEXT_FORMAT, colorize=colorize, diagnose=False
        )
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
            diagnose=False,
        )


def plugin_logger(name: str) -> LoguruLogger:
    """The logger a plugin gets: every line carries ``plugin=<name>``."""
    return logger.bind(plugin=name)
