"""`CommitCutter`: a TCP proxy between cluster members and PostgreSQL that cuts a message's
commit off after PostgreSQL committed it: the COMMIT goes through, PostgreSQL's answer never
comes back, and both sides of the connection are closed (what a network failure at that moment
does). Runs on the test's event loop; members reach it through `url`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["CLAIMING", "ENDING", "CommitCutter"]

ENDING = b"UPDATE cluster_messages SET status = "
"""A message's end (`RoomQueue._end_query`): the transaction that COMMITs next is its commit."""
CLAIMING = b"WITH c AS (SELECT agent_id, room_id, holder FROM cluster_rooms"
"""A room's claim (`RoomQueue._claim_query`), alone or inside a message's commit."""
COMMIT = b"COMMIT\x00"
"""The COMMIT statement (client side) and its CommandComplete tag (server side)."""


class CommitCutter:
    """Forwards connections to the PostgreSQL at `upstream` (a libpq URL); cuts the first
    `cuts` commits of transactions holding `marker` (messages' ends: their commits) after
    PostgreSQL answered their COMMIT."""

    def __init__(
        self,
        upstream: str,
        cuts: int,
        *,
        on_cut: Callable[[], None] | None = None,
        hold: float = 0.0,
        marker: bytes = ENDING,
    ) -> None:
        self.params = conninfo_to_dict(upstream)
        self.marker = marker
        self.cuts = cuts
        self.cut = 0
        """Commits cut off so far (PostgreSQL had committed each)."""
        self.on_cut = on_cut
        """Called as PostgreSQL's answer to a cut COMMIT arrives (before the cut)."""
        self.hold = hold
        """Seconds the connection is held open after that, before it is cut."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        """Listen on a free loopback port; returns the URL members connect to."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        params = {k: v for k, v in self.params.items() if k not in ("host", "port")}
        return make_conninfo(**params, host="127.0.0.1", port=str(port))

    async def close(self) -> None:
        """Stop listening and close every connection (the members see PostgreSQL go)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0.1)  # the pumps see their sockets closed and end

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host = str(self.params.get("host") or "localhost")
        port = str(self.params.get("port") or "5432")
        if host.startswith("/"):  # a unix socket directory (pgserver's)
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, int(port))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._upstream()
        self._writers |= {writer, up_writer}
        ending = False
        cutting = False
        done = asyncio.Event()

        async def to_server() -> None:
            with contextlib.suppress(OSError):
                await pump_to_server()
            done.set()

        async def pump_to_server() -> None:
            nonlocal ending, cutting
            while data := await reader.read(65536):
                if self.marker in data:
                    ending = True
                if ending and COMMIT in data:
                    ending = False
                    if self.cuts > 0:
                        self.cuts -= 1
                        cutting = True  # set before PostgreSQL can answer the COMMIT
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            with contextlib.suppress(OSError):
                await pump_to_client()
            done.set()

        async def pump_to_client() -> None:
            while data := await up_reader.read(65536):
                if cutting:
                    if COMMIT in data:  # committed: its answer is lost with the connection
                        self.cut += 1
                        if self.on_cut is not None:
                            self.on_cut()
                        await asyncio.sleep(self.hold)
                        break
                    continue
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        try:
            await done.wait()
        finally:
            for pump in pumps:
                pump.cancel()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
                self._writers.discard(w)
