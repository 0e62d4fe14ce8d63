"""`LocalCluster`: member processes (``agenthost run --role ...``) of one cluster on loopback,
and SQL on its database; the tests and bench/cluster.py start clusters with it. The members load
the ``cluster_probe`` model plugin (tests/cluster/probe) through PYTHONPATH."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from host.cluster.local import free_port, member_env, spawn_member, stop_process

PROBE = Path(__file__).parent / "probe"
AGENT = "Probe"


class LocalCluster:
    """Member processes of one test's cluster, and SQL on its schema."""

    def __init__(self, url: str, nats: str | None, tmp: Path) -> None:
        self.url = url
        self.nats = nats
        self.tmp = tmp
        self.members: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {"CLUSTER_PROBE_DELAY": "0", "CLUSTER_PROBE_HANG": "3"}
        self.settings: dict[str, Any] = {
            "lease": 2,
            "poll_interval": 0.2,
            "max_tries": 3,
            "drain_timeout": 10,
        }
        self.api_url = ""
        self.plugins = ["eliza", "postgres", "cluster_probe"]
        self.metrics = False

    def config(self) -> Path:
        chars = self.tmp / "characters"
        chars.mkdir(exist_ok=True)
        path = self.tmp / "agenthost.yaml"
        data = {
            "data_dir": str(self.tmp / "data"),
            "plugins": {"enabled": self.plugins},
            "agents": {"characters_dir": str(chars), "characters": [{"name": AGENT}]},
            "metrics": {"enabled": self.metrics},
            "cluster": self.settings,
        }
        path.write_text(yaml.safe_dump(data))
        return path

    def spawn(self, name: str, role: str) -> subprocess.Popen[bytes]:
        port = free_port() if role != "worker" else None
        env = member_env(
            postgres_url=self.url,
            nats_url=self.nats,
            role=role,
            node_id=name,
            port=port,
            extra={
                **self.env,
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(PROBE), os.environ.get("PYTHONPATH")])
                ),
            },
        )
        if self.nats is None:
            env["AGENTHOST_CLUSTER__NATS_URL"] = "null"
        process = spawn_member(env, role=role, config=self.config(), log=self.tmp / f"{name}.log")
        self.members[name] = process
        if port is not None:
            self.api_url = f"http://127.0.0.1:{port}"
            self._wait_ready(process, name)
        return process

    def spawn_single(self, name: str) -> subprocess.Popen[bytes]:
        """A single-process host (no cluster) on the same PostgreSQL store: the baseline."""
        port = free_port()
        env = dict(os.environ)
        env.update(self.env)
        env.update(
            {
                "AGENTHOST_PLUGINS__POSTGRES__URL": self.url,
                "AGENTHOST_SERVICES__DATABASE": "postgres",
                "AGENTHOST_HTTP__PORT": str(port),
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(PROBE), os.environ.get("PYTHONPATH")])
                ),
            }
        )
        settings, self.settings = self.settings, {}
        try:
            config = self.config()
        finally:
            self.settings = settings
        command = [sys.executable, "-c", "from host.cli import main; main()"]
        command += ["--config", str(config), "run"]
        with open(self.tmp / f"{name}.log", "ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.members[name] = process
        self.api_url = f"http://127.0.0.1:{port}"
        self._wait_ready(process, name)
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], name: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited: {self.log(name)}")
            try:
                if httpx.get(f"{self.api_url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{name} not ready: {self.log(name)}")

    async def wait_workers(self, *names: str, within: float = 60) -> None:
        """Until each named worker has its agent running (it logs it)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all("agent Probe started" in self.log(n) for n in names):
                return
            for name in names:
                if self.members[name].poll() is not None:
                    raise AssertionError(f"{name} exited: {self.log(name)}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"workers not ready: {[self.log(n)[-2000:] for n in names]}")

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.members[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.members[name].wait()

    async def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            cursor = await conn.execute(query, params)  # type: ignore[arg-type]
            return await cursor.fetchall() if cursor.description else []

    def stop_all(self) -> None:
        for process in self.members.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
        for process in self.members.values():
            stop_process(process, timeout=20)


# ---------------------------------------------------------------------- load and faults


@dataclass
class Report:
    """One run's figures, checked afterwards in SQL per room."""

    messages: int
    seconds: float
    latencies: list[float]
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    parked: int = 0
    redeliveries: int = 0
    retried_requests: int = 0
    takeovers: list[float] = field(default_factory=list)
    chaos: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each group of processes during the run (bench/cluster.py)."""
    phases: dict[str, float] = field(default_factory=dict)
    """The workers' seconds per phase (host.cluster.worker.PHASES), summed over workers."""
    processed: int = 0
    """Messages the workers committed (warm-up included), for `phases` per message."""
    load: float = 0.0
    """The machine's 1-minute load average at the end of the run (bench/cluster.py)."""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def text_of(room: str, index: int) -> str:
    return f"{room[:8]} {index}"


async def drive(
    api_url: str,
    rooms: list[str],
    per_room: int,
    *,
    concurrency: int = 64,
    more: Callable[[], bool] | None = None,
    sent: dict[str, int] | None = None,
) -> tuple[list[float], int]:
    """Each room a client sending its messages one after the other (each after the last is
    answered, so arrival order is known), at most `concurrency` rooms at once: `per_room` each,
    and more while `more()` says so (the fault run: until its faults have all come round). A
    failed request (PostgreSQL restarting, a timeout) is sent again with its Idempotency-Key: it
    must not be taken twice. Returns each message's latency (first try to reply) and the
    retries; `sent` gets the number of messages each room sent."""
    latencies: list[float] = []
    retried = 0
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as client:

        async def converse(room: str) -> None:
            nonlocal retried
            async with gate:
                index = 0
                while index < per_room or (more is not None and more()):
                    body = {"text": text_of(room, index), "room_id": room}
                    headers = {"Idempotency-Key": f"{room}:{index}"}
                    started = time.perf_counter()
                    while True:
                        try:
                            response = await client.post(
                                f"/agents/{AGENT}/messages", json=body, headers=headers
                            )
                            if response.status_code in (200, 502):  # answered, or parked
                                break
                        except httpx.HTTPError:
                            pass
                        retried += 1
                        await asyncio.sleep(0.3)
                    latencies.append(time.perf_counter() - started)
                    index += 1
                    if sent is not None:
                        sent[room] = index

        await asyncio.gather(*(converse(room) for room in rooms))
    return latencies, retried


async def verify(cluster: LocalCluster, sent: dict[str, int], report: Report) -> None:
    """Per room, from the memories: every message `sent` stored and answered once, in order."""
    rows = await cluster.sql(
        "SELECT room_id::text, content::json->>'text' FROM memories"
        " ORDER BY room_id, created_at, id"
    )
    by_room: dict[str, list[str]] = {}
    for room, text in rows:
        by_room.setdefault(room, []).append(text)
    parked = {
        (str(r[0]), str(r[1]))
        for r in await cluster.sql(
            "SELECT room_id, message::json->'content'->>'text' FROM cluster_messages"
            " WHERE status = 'parked'"
        )
    }
    report.parked = len(parked)
    for room, count in sent.items():
        lines = by_room.get(room, [])
        expected = [text_of(room, i) for i in range(count)]
        expected = [t for t in expected if (room, t) not in parked]
        incoming = [t for t in lines if not t.startswith("re: ")]
        replies = [t.removeprefix("re: ") for t in lines if t.startswith("re: ")]
        for texts in (incoming, replies):
            report.duplicated += sum(n - 1 for n in Counter(texts).values() if n > 1)
        report.lost += sum(1 for t in expected if t not in incoming or t not in replies)
        present = [t for t in expected if t in incoming]
        if list(dict.fromkeys(incoming)) != present or list(dict.fromkeys(replies)) != present:
            report.out_of_order += 1
    [(redeliveries,)] = await cluster.sql(
        "SELECT COALESCE(sum(redeliveries), 0) FROM cluster_rooms"
    )
    report.redeliveries = int(redeliveries)


KINDS = ("kill", "pause", "nats", "postgres")
"""The kinds of fault `Chaos` injects (besides the probe's crashes at named points)."""


class Chaos:
    """Faults while the load runs, one every `every` s in a fixed cycle: kill -9 of a worker
    (one holding a room mid-message when there is one: its rooms' takeover is timed), SIGSTOP
    of such a worker past its lease, NATS restart, PostgreSQL restart; dead workers are
    replaced. `complete` once every kind has happened and at least one kill hit a worker
    mid-message: then it injects no more (the load may end)."""

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        workers: int,
        lease: float,
        restart_nats: Callable[[], None] | None,
        restart_postgres: Callable[[], None] | None,
        every: float = 3.0,
    ) -> None:
        self.cluster = cluster
        self.workers = workers
        self.lease = lease
        self.restart_nats = restart_nats
        self.restart_postgres = restart_postgres
        self.every = every
        self.takeovers: list[float] = []
        """Seconds from a kill -9 to the next commit, by another worker, of each room the
        killed worker held mid-message."""
        self.claims: list[float] = []
        """Seconds from a kill -9 to the claim of each of those rooms by another worker (seen
        while held: a room claimed, answered and let go between two looks is not counted)."""
        self.done: Counter[str] = Counter()
        """Faults injected, by kind (`KINDS`), plus ``kill mid-message`` (kills of a worker
        holding a room with its message in progress)."""
        self.untaken = 0
        """Rooms of a killed worker not committed by another within 60 s of the kill."""
        self.log: list[tuple[float, str, str]] = []
        """(time.time(), fault, worker or ""), for reading the members' logs after a run."""
        self.cycle_seconds: float | None = None
        """Seconds from the first fault until the cycle was complete."""
        self._born = 0

    @property
    def kinds(self) -> list[str]:
        available = {"nats": self.restart_nats, "postgres": self.restart_postgres}
        return [k for k in KINDS if available.get(k, True) is not None]

    @property
    def complete(self) -> bool:
        """Every kind of fault has happened, and a kill hit a worker mid-message."""
        return all(self.done[k] for k in self.kinds) and bool(self.done["kill mid-message"])

    @property
    def started(self) -> int:
        """Workers started (the first ones and every replacement)."""
        return self._born

    def live(self) -> list[str]:
        return [
            n for n, p in self.cluster.members.items() if n.startswith("w") and p.poll() is None
        ]

    def replace_dead(self) -> None:
        while len(self.live()) < self.workers:
            self._born += 1
            self.cluster.spawn(f"w{self._born}", "worker")

    async def run(self, stop: asyncio.Event) -> None:
        """Inject faults until the cycle is `complete` (or `stop`), replacing dead workers
        until `stop` (in a task of its own: a fault waits for takeovers meanwhile)."""
        self.replace_dead()
        keeper = asyncio.create_task(self._keep(stop))
        try:
            await self._inject(stop)
            await stop.wait()  # the load finishes its messages: workers still replaced
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.replace_dead()  # a worker killed, or one the probe crashed
            await asyncio.sleep(0.2)

    async def _inject(self, stop: asyncio.Event) -> None:
        actions = ["kill", "pause", "nats", "kill", "postgres", "kill"]
        step = 0
        started = next_fault = time.monotonic() + self.every
        while not stop.is_set() and not self.complete:
            await asyncio.sleep(0.2)
            if time.monotonic() < next_fault:
                continue
            action = actions[step % len(actions)]
            step += 1
            try:
                await self.fault(action)
            finally:
                next_fault = time.monotonic() + self.every
        if self.complete:
            self.cycle_seconds = time.monotonic() - started

    async def fault(self, action: str) -> None:
        if action in ("kill", "pause"):
            await self._strike(action)
            return
        restart = self.restart_nats if action == "nats" else self.restart_postgres
        if restart is not None:
            self.log.append((time.time(), action, ""))
            await asyncio.to_thread(restart)
            self.done[action] += 1

    async def _strike(self, action: str) -> None:
        """kill -9 or SIGSTOP (past the lease) a worker, one mid-message if there is one."""
        victim, rooms = await self._victim()
        if victim is None:
            return
        self.log.append((time.time(), action, victim))
        if action == "kill":
            killed = time.time()
            self.cluster.kill(victim)
            self.replace_dead()
            if rooms:
                await self._taken_over(victim, rooms, killed)
                self.done["kill mid-message"] += 1
        else:
            self.cluster.kill(victim, signal.SIGSTOP)
            await asyncio.sleep(self.lease + 1)
            self.cluster.kill(victim, signal.SIGCONT)
        self.done[action] += 1

    def ready(self) -> list[str]:
        """The live workers running their agent (a replacement takes seconds to start)."""
        return [n for n in self.live() if "agent Probe started" in self.cluster.log(n)]

    async def _victim(self, within: float = 10.0) -> tuple[str | None, list[str]]:
        """A ready worker holding rooms with a message in progress while another worker is
        ready to take them over, and those rooms (waiting up to `within` s for one: the probe's
        crashes may have left replacements starting); else any live worker, holding none."""
        deadline = time.monotonic() + within
        while True:
            ready = self.ready()
            rows: list[tuple[Any, ...]] = []
            if len(ready) >= 2:
                try:
                    rows = await self.cluster.sql(
                        "SELECT holder, room_id::text FROM cluster_rooms WHERE pending > 0"
                        " AND holder = ANY(%s) AND lease_until > clock_timestamp()",
                        ready,
                    )
                except psycopg.Error:
                    rows = []
            if rows:
                victim = random.choice(sorted({str(r[0]) for r in rows}))
                return victim, [str(r[1]) for r in rows if r[0] == victim]
            if time.monotonic() >= deadline:
                live = self.live()
                return (random.choice(live) if live else None), []
            await asyncio.sleep(0.05)

    async def _taken_over(self, worker: str, rooms: list[str], killed: float) -> None:
        """Time, for each of `rooms`, its claim by another worker (`claims`: when first seen
        held by another, from the lease it took) and its next commit by another worker after
        `killed` (`takeovers`)."""
        waiting, unclaimed = set(rooms), set(rooms)
        deadline = time.monotonic() + 60
        while waiting and time.monotonic() < deadline:
            try:
                held = await self.cluster.sql(
                    "SELECT room_id::text, extract(epoch FROM lease_until) FROM cluster_rooms"
                    " WHERE room_id::text = ANY(%s) AND holder <> %s",
                    sorted(unclaimed),
                    worker,
                )
                rows = await self.cluster.sql(
                    "SELECT room_id::text, min(extract(epoch FROM done_at)) FROM cluster_messages"
                    " WHERE room_id::text = ANY(%s) AND status = 'done' AND worker <> %s"
                    " AND done_at > to_timestamp(%s) GROUP BY room_id",
                    sorted(waiting),
                    worker,
                    killed,
                )
            except psycopg.Error:
                held, rows = [], []
            for room, lease_until in held:
                self.claims.append(float(lease_until) - self.lease - killed)
                unclaimed.discard(room)
            for room, at in rows:
                self.takeovers.append(float(at) - killed)
                waiting.discard(room)
                unclaimed.discard(room)  # claimed and let go between two looks
            await asyncio.sleep(0.05)
        self.untaken += len(waiting)


def restart_postgres(server: Any) -> None:
    """Restart a pgserver PostgreSQL (fast shutdown: sessions are cut, as in a crash-restart)."""
    import pgserver

    pgserver.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60
    )


async def fault_run(
    tmp: Path,
    *,
    rooms: int,
    per_room: int,
    workers: int = 3,
    lease: float = 2.0,
    every: float = 3.0,
    within: float = 300.0,
) -> tuple[Report, Chaos]:
    """The fault run: a PostgreSQL and a NATS of its own (both restarted during the run), an API
    process and `workers` workers crashing at named points (the probe) and killed, paused and
    replaced by `Chaos`, under the load of `drive`; then `verify`. Each room sends at least
    `per_room` messages, and goes on until a whole cycle of faults has run (`Chaos.complete`),
    for at most `within` s (the caller checks `Chaos.complete`)."""
    import shutil
    import tempfile
    from uuid import uuid4

    from host.cluster.local import start_nats, start_postgres

    directory = Path(tempfile.mkdtemp(prefix="agenthost-fault-pg-"))
    server = start_postgres(directory)
    port = free_port()
    nats = [start_nats(port)]

    def restart_nats() -> None:
        stop_process(nats[0])
        time.sleep(1)
        nats[0] = start_nats(port)

    cluster = LocalCluster(str(server.get_uri()), f"nats://127.0.0.1:{port}", tmp)
    cluster.settings.update(lease=lease, max_tries=10)
    cluster.env.update(CLUSTER_PROBE_DELAY="0.02", CLUSTER_PROBE_CRASH="0.005")
    try:
        cluster.spawn("api", "api")
        chaos = Chaos(
            cluster,
            workers=workers,
            lease=lease,
            restart_nats=restart_nats,
            restart_postgres=lambda: restart_postgres(server),
            every=every,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(chaos.run(stop))
        names = [str(uuid4()) for _ in range(rooms)]
        sent: dict[str, int] = dict.fromkeys(names, 0)
        started = time.perf_counter()
        ends = time.monotonic() + within

        def more() -> bool:
            return not chaos.complete and time.monotonic() < ends and not task.done()

        try:
            latencies, retried = await drive(
                cluster.api_url, names, per_room, concurrency=rooms, more=more, sent=sent
            )
        finally:
            stop.set()
            await task  # its error (a server that did not come back), if any, goes up
        seconds = time.perf_counter() - started
        report = Report(sum(sent.values()), seconds, latencies, retried_requests=retried)
        report.takeovers = chaos.takeovers
        report.chaos = chaos.done
        await verify(cluster, sent, report)
        return report, chaos
    finally:
        await asyncio.to_thread(cluster.stop_all)
        stop_process(nats[0])
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
