"""A started host over real plugins whose TEXT_LARGE echoes its prompt: what the agent saw."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from contracts.config import HostConfig
from contracts.models import TEXT_LARGE, ModelHandler, TextParams, TextResult
from host.app import Host
from host.config import LoadedConfig

DATA = Path(__file__).parents[2] / "bench" / "data"


async def echo_prompt(params: TextParams) -> TextResult:
    """The 'model' answers with the prompt it was given (ELIZA would not quote memories)."""
    return TextResult(text=params.prompt or "", model="echo")


def config(tmp_path: Path, plugins: list[str], **sections: Any) -> LoadedConfig:
    return LoadedConfig(
        HostConfig.model_validate(
            {
                "data_dir": tmp_path / "data",
                "http": {"port": 0},
                "agents": {"characters_dir": tmp_path / "none"},
                "plugins": {"enabled": plugins, **sections},
            }
        ),
        None,
    )


@asynccontextmanager
async def echo_host(loaded: LoadedConfig, *, http: bool = False) -> AsyncIterator[Host]:
    host = Host(loaded)
    await host.start(http=http)
    host.models.register(ModelHandler(TEXT_LARGE, echo_prompt, priority=1000), owner="echo")
    try:
        yield host
    finally:
        await host.stop()
