"""The logger plugins receive: a loguru logger bound to the plugin's name.

Declare ``log: Logger`` in a plugin's ``__init__`` and the host injects a logger whose every line
carries ``plugin=<name>`` (so logs can be filtered per plugin). The protocol lists the loguru
methods plugins use, so mypy checks calls without tying contracts to loguru's types.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from contracts.tokens import Token

__all__ = ["LOGGER", "Logger"]


@runtime_checkable
class Logger(Protocol):
    """loguru-style logging: ``log.info("saved {} rows", n)`` formats lazily with ``{}``."""

    def trace(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def debug(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def info(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def success(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def warning(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def error(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def critical(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def exception(self, message: str, /, *args: Any, **kwargs: Any) -> None: ...
    def bind(self, **kwargs: Any) -> Any: ...


LOGGER: Token[Logger] = Token("logger", Logger)
