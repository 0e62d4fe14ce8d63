"""Async factories, async resources and the async/sync boundary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from contracts.services import AsyncServiceError
from contracts.tokens import Token
from host.di import Container


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.open = True


class Api:
    def __init__(self, client: Client) -> None:
        self.client = client


URL = Token("test.url", str)
CLIENT = Token("test.client", Client)
API = Token("test.api", Api)


async def connect(url: str) -> Client:
    await asyncio.sleep(0)
    return Client(url)


async def test_async_singleton_is_awaited_once_even_when_raced(container: Container) -> None:
    calls: list[str] = []

    async def slow_connect(url: str) -> Client:
        calls.append(url)
        await asyncio.sleep(0.01)
        return Client(url)

    container.provide(URL, "http://127.0.0.1:1")
    container.register(CLIENT, slow_connect)
    clients = await asyncio.gather(*(container.aresolve(CLIENT) for _ in range(10)))
    assert len({id(client) for client in clients}) == 1
    assert calls == ["http://127.0.0.1:1"]


async def test_sync_resolve_of_an_async_service_says_what_to_do(container: Container) -> None:
    container.provide(URL, "u")
    container.register(CLIENT, connect, owner="net")
    with pytest.raises(AsyncServiceError) as caught:
        container.resolve(CLIENT)
    assert str(caught.value) == (
        "service 'test.client' (plugin net) is async (its factory connect is a coroutine"
        " function); use `await container.aresolve(...)`"
    )


async def test_a_service_depending_on_an_async_one_is_async_too(container: Container) -> None:
    container.provide(URL, "u")
    container.register(CLIENT, connect, owner="net")
    container.register(API, Api, lifetime="transient")
    with pytest.raises(AsyncServiceError, match=r"it depends on async service 'test.client'"):
        container.resolve(API)
    api = await container.aresolve(API)
    assert api.client is await container.aresolve(CLIENT)
    assert (await container.aresolve(API)) is not api


async def test_sync_resolve_works_once_an_async_singleton_is_ready(
    container: Container,
) -> None:
    container.provide(URL, "u")
    container.register(CLIENT, connect)
    client = await container.aresolve(CLIENT)
    assert container.resolve(CLIENT) is client
    async with container.create_scope("message") as message:
        assert message.resolve(CLIENT) is client


async def test_async_resource_is_set_up_and_torn_down(container: Container) -> None:
    async def session(url: str) -> AsyncIterator[Client]:
        client = Client(url)
        yield client
        client.open = False

    container.provide(URL, "u")
    container.register(CLIENT, session, scope="message")
    async with container.create_scope("message") as message:
        client = await message.aresolve(CLIENT)
        assert client.open
        assert message.resolve(CLIENT) is client
    assert not client.open


async def test_failed_async_setup_is_retried_on_next_resolve(container: Container) -> None:
    attempts: list[int] = []

    async def flaky(url: str) -> Client:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("refused")
        return Client(url)

    container.provide(URL, "u")
    container.register(CLIENT, flaky)
    with pytest.raises(ConnectionError):
        await container.aresolve(CLIENT)
    assert (await container.aresolve(CLIENT)).url == "u"
    assert len(attempts) == 2


async def test_async_transient_is_awaited_every_time(container: Container) -> None:
    container.provide(URL, "u")
    container.register(CLIENT, connect, lifetime="transient")
    first = await container.aresolve(CLIENT)
    second = await container.aresolve(CLIENT)
    assert first is not second and first.url == second.url == "u"
