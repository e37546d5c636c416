"""A chaos run that counts: the whole ingest path under kills, poison and a restore.

On a local stack of its own (its own folder and ports), the sink and the trainer run as
processes, as compose runs them, while a feeder publishes a steady stream of known ticks to
``prices.ticks.v1``. At random moments after the first write, the sink, the trainer, the
broker, PostgreSQL and MinIO are each killed with SIGKILL and started again; poison messages
are injected; a backup is taken and, mid-stream, restored into the live database. A process
that dies on its own is started again, as compose's ``restart: unless-stopped`` would, and
counted. At the end the stream stops, the sink drains, and the run counts:

- every tick Kafka acknowledged is in ``prices.ticks`` (lost), none twice (duplicated), and
  nothing there that was not published;
- every hour of ``analytics.metal_prices`` equals the hourly rule recomputed from the ticks;
- every batch in ``pipeline.batches`` has exactly one ``batch-loaded`` event (events of
  batches the restore undid are counted apart);
- every training run is closed; every poison message is in the DLQ.

``tests/chaos/test_chaos.py`` runs a short plan in CI; ``bench/bench_chaos.py`` a longer one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from metalcast import stack
from metalcast.stack import StackConfig
from metalcast.stack._server import Server
from metalcast.stack.kafka import Kafka
from metalcast.stack.minio import MinIO
from metalcast.stack.postgres import Postgres
from metalcast_core import (
    BATCH_LOADED,
    METALS,
    TICKS,
    TICKS_DLQ,
    TRAINER_GROUP,
    KafkaSettings,
    PostgresSettings,
    PriceTick,
    make_consumer,
    make_producer,
    migrate,
)

log = logging.getLogger("metalcast.chaos")

TARGETS = ("sink", "trainer", "kafka", "postgres", "s3")
MIGRATIONS = Path(__file__).resolve().parents[2] / "infra" / "migrations"
SOURCE = "chaos"


@dataclass(frozen=True)
class ChaosPlan:
    seconds: float = 60.0  # how long the feed publishes
    rate: float = 100.0  # ticks per second
    kills: tuple[str, ...] = TARGETS  # in this order, at random moments
    poison: int = 3
    backup_restore: bool = True
    seed: int = 7
    down_s: tuple[float, float] = (0.5, 3.0)  # how long a killed part stays down
    drain_timeout_s: float = 180.0


@dataclass
class Kill:
    target: str
    at_s: float  # since the first write
    down_s: float
    recovered_s: float | None = None  # from the restart until a new tick was stored


@dataclass
class ChaosReport:
    plan: ChaosPlan
    kills: list[Kill] = field(default_factory=list)
    published: int = 0  # ticks the feeder tried
    acked: int = 0  # ticks Kafka acknowledged
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # stored ticks the feeder never sent
    hourly_rows: int = 0
    hourly_wrong: int = 0
    batches: int = 0
    events_missing: int = 0  # batches without an event
    events_duplicated: int = 0  # batches with more than one
    events_undone: int = 0  # events of batches the restore rolled back
    runs: int = 0
    runs_open: int = 0
    poison_sent: int = 0
    poison_dead_lettered: int = 0
    crashes: dict[str, int] = field(default_factory=dict)  # exits nobody asked for
    restore_s: float | None = None
    restore_lines: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.unexpected == 0
            and self.hourly_wrong == 0
            and self.events_missing == 0
            and self.events_duplicated == 0
            and self.runs_open == 0
            and self.poison_dead_lettered == self.poison_sent
            and self.stored > 0
            and self.runs > 0
        )

    def lines(self) -> list[str]:
        out = [
            f"chaos: {self.elapsed_s:.0f} s, feed {self.plan.seconds:.0f} s at "
            f"{self.plan.rate:.0f} ticks/s, seed {self.plan.seed}",
            f"  ticks: {self.published} published, {self.acked} acknowledged, {self.stored} "
            f"stored; lost {self.lost}, duplicated {self.duplicated}, unexpected "
            f"{self.unexpected}",
            f"  hourly rows: {self.hourly_rows}, wrong {self.hourly_wrong}",
            f"  batches: {self.batches}; without an event {self.events_missing}, with more than "
            f"one {self.events_duplicated}; events of batches undone by the restore "
            f"{self.events_undone}",
            f"  training runs: {self.runs}, still open {self.runs_open}",
            f"  poison: {self.poison_sent} sent, {self.poison_dead_lettered} dead-lettered",
        ]
        for kill in self.kills:
            recovered = (
                f"stored again {kill.recovered_s:.1f} s after the restart"
                if kill.recovered_s is not None
                else "nothing was left to store, or not stored within 2 min"
            )
            out.append(
                f"  killed {kill.target:<8} at {kill.at_s:6.1f} s, down {kill.down_s:.1f} s, "
                f"{recovered}"
            )
        if self.restore_s is not None:
            out.append(
                f"  backup restored into the live database mid-stream in {self.restore_s:.1f} s"
            )
            out += [f"    {line}" for line in self.restore_lines]
        if self.crashes:
            out.append(
                "  exits nobody asked for (started again): "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.crashes.items()))
            )
        out.append(f"  verdict: {'PASS' if self.ok else 'FAIL'}")
        return out


# --- the services, as processes ------------------------------------------------------------


class Service:
    """One of our services as a child process, started again if it dies unasked."""

    def __init__(self, name: str, module: str, env: dict[str, str], log_path: Path) -> None:
        self.name, self.module, self.env, self.log_path = name, module, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.wanted = False
        self.crashes = 0

    def start(self) -> None:
        self.wanted = True
        log_file = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()

    def kill(self) -> None:
        self.wanted = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        self.wanted = False
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def tend(self) -> None:
        """Start again if it died while wanted."""
        if self.wanted and self.proc is not None and self.proc.poll() is not None:
            self.crashes += 1
            log.warning("%s exited with %s: starting it again", self.name, self.proc.returncode)
            self.start()


# --- the feed -------------------------------------------------------------------------------


STEP = timedelta(minutes=5)  # between two ticks of a metal: 12 an hour


def _tick(i: int, base: datetime) -> PriceTick:
    metal = METALS[i % len(METALS)]
    step = i // len(METALS)
    return PriceTick(
        symbol=metal.symbol,
        source=SOURCE,
        observed_at=base + step * STEP,
        price=round(100.0 * (1 + i % len(METALS)) + (step % 997) / 7, 4),
    )


def _index(symbol: str, observed_at: datetime, base: datetime) -> int:
    step = int((observed_at - base) / STEP)
    return step * len(METALS) + [m.symbol for m in METALS].index(symbol)


@dataclass
class Feed:
    base: datetime
    began: float | None = None  # time.monotonic() of the first send
    acked: set[int] = field(default_factory=set)
    tried: set[int] = field(default_factory=set)
    poison: list[bytes] = field(default_factory=list)


async def _publish(kafka: KafkaSettings, plan: ChaosPlan, feed: Feed, done: asyncio.Event) -> None:
    """Publish ``plan.rate`` ticks a second for ``plan.seconds``; a chunk whose send fails
    (the broker is down) is sent again, with a new producer, until acknowledged."""
    topic = kafka.topic_name(TICKS)
    rng = random.Random(plan.seed + 1)
    poison_at = sorted(rng.uniform(0.1, 0.9) * plan.seconds for _ in range(plan.poison))
    total = int(plan.seconds * plan.rate)
    producer = make_producer(kafka, request_timeout_ms=5_000, max_request_size=8 << 20)
    await producer.start()
    began = feed.began = time.monotonic()
    i = 0
    try:
        while i < total:
            elapsed = time.monotonic() - began
            while poison_at and poison_at[0] <= elapsed:
                poison_at.pop(0)
                pill = b"\xff chaos poison " + uuid.uuid4().bytes + os.urandom(64)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.send_and_wait(topic, pill, key=b"XAU"), 10)
                    feed.poison.append(pill)
            due = min(total, int(elapsed * plan.rate) + 1)
            if i >= due:
                await asyncio.sleep(0.02)
                continue
            chunk = range(i, min(due, i + 200))
            feed.tried.update(chunk)

            async def send(ticks: range = chunk, producer: AIOKafkaProducer = producer) -> None:
                futures = []
                for k in ticks:
                    tick = _tick(k, feed.base)
                    futures.append(
                        await producer.send(topic, TICKS.encode(tick), key=tick.symbol.encode())
                    )
                await asyncio.gather(*futures)

            try:
                # Enqueueing waits too (for metadata, for room): the whole chunk is bounded.
                await asyncio.wait_for(send(), 15)
            except Exception as exc:  # the broker is away: a new producer, the same chunk
                log.info("feed: chunk at %d not acknowledged (%s); again", i, type(exc).__name__)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 10)
                await asyncio.sleep(0.5)
                producer = make_producer(kafka, request_timeout_ms=5_000, max_request_size=8 << 20)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.start(), 10)
                continue
            feed.acked.update(chunk)
            i = chunk.stop
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)
        done.set()


# --- helpers on the database --------------------------------------------------------------


async def _stored(url: str) -> int | None:
    """How many feed ticks are stored, or None while PostgreSQL does not answer."""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(url), 3)
    except Exception:
        return None
    try:
        value = await conn.fetchval("SELECT count(*) FROM prices.ticks WHERE source = $1", SOURCE)
        return int(value)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def _until(predicate: Callable[[], Awaitable[bool]], timeout_s: float) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if await predicate():
            return time.monotonic() - began
        await asyncio.sleep(0.2)
    return None


# --- the run --------------------------------------------------------------------------------


async def run_chaos(plan: ChaosPlan, config: StackConfig, workdir: Path) -> ChaosReport:
    """Start a stack from ``config`` (its own folder and ports), run ``plan``, count."""
    began = time.monotonic()
    report = ChaosReport(plan=plan)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(stack.up, config)
    env_vars = stack.env(config)
    pg = PostgresSettings(url=env_vars["METALCAST_POSTGRES__URL"])
    await migrate(pg, MIGRATIONS)
    kafka = KafkaSettings(bootstrap_servers=env_vars["METALCAST_KAFKA__BOOTSTRAP_SERVERS"])
    env = {
        **os.environ,
        **env_vars,
        "METALCAST_LOG_LEVEL": "INFO",
        "METALCAST_TRAINER__CANDIDATES": '["naive", "drift"]',
        "METALCAST_TRAINER__BACKTEST_ORIGINS": "24",
        "METALCAST_TRAINER__BACKTEST_HORIZON": "6",
        "METALCAST_TRAINER__MIN_CALIBRATION": "6",
        "METALCAST_TRAINER__WORK_DIR": str(workdir / "trainer-work"),
    }
    services = {
        "sink": Service("sink", "metalcast_sink", env, workdir / "sink.log"),
        "trainer": Service("trainer", "metalcast_trainer", env, workdir / "trainer.log"),
    }
    servers: dict[str, Server] = {
        "kafka": Kafka(config),
        "postgres": Postgres(config),
        "s3": MinIO(config),
    }
    hours = int(plan.seconds * plan.rate / len(METALS) * STEP.total_seconds() / 3600) + 2
    now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    feed = Feed(base=now_hour - timedelta(hours=hours))
    fed = asyncio.Event()
    for service in services.values():
        service.start()

    async def tend() -> None:
        while True:
            for service in services.values():
                service.tend()
            await asyncio.sleep(0.5)

    tending = asyncio.create_task(tend())
    feeding = asyncio.create_task(_publish(kafka, plan, feed, fed))
    try:
        first = await _until(lambda: _has_stored(pg.url), 120)
        if first is None:
            raise RuntimeError(f"nothing stored in 120 s: see {workdir}/sink.log")
        started = feed.began or time.monotonic()
        rng = random.Random(plan.seed)
        # Each kill at its own random moment over the feed; a part killed is started again
        # in the background (parts may be down together). The restore comes in the first
        # half of the feed, with every part up, so that the stream goes on after it.
        first_write = time.monotonic() - started
        last = max(first_write + 2, plan.seconds - 5)
        steps = sorted((rng.uniform(first_write + 1, last), target) for target in plan.kills)
        if plan.backup_restore:
            steps.append((rng.uniform(first_write + 1, max(first_write + 2, last / 2)), "restore"))
            steps.sort()
        restarts: list[asyncio.Task[None]] = []
        watching: list[asyncio.Task[None]] = []
        locks = {target: asyncio.Lock() for target in plan.kills}
        for moment, step in steps:
            await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
            if step == "restore":
                await asyncio.gather(*restarts)
                await _backup_and_restore(report, env_vars, services["sink"], pg, workdir)
                continue
            kill = Kill(step, time.monotonic() - started, rng.uniform(*plan.down_s))
            report.kills.append(kill)
            restarts.append(
                asyncio.create_task(
                    _kill_and_restart(kill, services, servers, pg.url, feed, watching, locks[step])
                )
            )
        await asyncio.gather(*restarts)
        await fed.wait()
        await feeding
        # Drain: everything acknowledged stored, and quiet for a moment.
        target = len(feed.acked)
        drained = await _until(lambda: _at_least(pg.url, target), plan.drain_timeout_s)
        if drained is None:
            log.error(
                "the sink did not store every acknowledged tick in time: its tasks in sink.log"
            )
            sink = services["sink"].proc
            if sink is not None and sink.poll() is None:
                sink.send_signal(signal.SIGUSR1)  # it logs where each of its tasks waits
                await asyncio.sleep(1)
        for task in watching:
            await task
        # The trainer has handled every batch-loaded event and closed every run.
        trained = await _until(lambda: _trainer_done(kafka, pg.url), plan.drain_timeout_s)
        if trained is None:
            log.error("the trainer did not catch up in time: see trainer.log")
    finally:
        tending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tending
        if not feeding.done():
            feeding.cancel()
            with contextlib.suppress(BaseException):
                await feeding
        for service in services.values():
            service.stop()
        report.crashes = {n: s.crashes for n, s in services.items() if s.crashes}
    await _count(report, feed, pg, kafka)
    report.elapsed_s = time.monotonic() - began
    return report


async def _kill_and_restart(
    kill: Kill,
    services: dict[str, Service],
    servers: dict[str, Server],
    url: str,
    feed: Feed,
    watching: list[asyncio.Task[None]],
    lock: asyncio.Lock,
) -> None:
    """One kill at a time per part: a second kill of a part waits until it is back up."""
    queued = time.monotonic()
    async with lock:
        kill.at_s += time.monotonic() - queued  # when it happened, after any wait
        await _kill_and_restart_now(kill, services, servers, url, feed, watching)


async def _kill_and_restart_now(
    kill: Kill,
    services: dict[str, Service],
    servers: dict[str, Server],
    url: str,
    feed: Feed,
    watching: list[asyncio.Task[None]],
) -> None:
    before = await _stored(url)
    if kill.target in services:
        services[kill.target].kill()
        await asyncio.sleep(kill.down_s)
        services[kill.target].start()
    else:
        server = servers[kill.target]
        pid = server.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            await _gone(pid)  # reaped, so a restart does not see it in lock files
        await asyncio.sleep(kill.down_s)
        for attempt in range(3):  # a server killed mid-start may need another go
            try:
                await asyncio.to_thread(server.start)
                break
            except Exception as exc:
                if attempt == 2:
                    raise
                log.warning("%s did not start again (%s); once more", kill.target, exc)
                await asyncio.sleep(2)
    log.info("killed %s at %.1f s; started again after %.1f s", kill.target, kill.at_s, kill.down_s)
    watching.append(asyncio.create_task(_recovery(kill, url, before, feed)))


async def _gone(pid: int, timeout_s: float = 30.0) -> None:
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.1)
    log.warning("pid %d still exists %.0f s after SIGKILL", pid, timeout_s)


async def _recovery(kill: Kill, url: str, before: int | None, feed: Feed) -> None:
    """Seconds from the restart until more ticks are stored than before the kill (left None
    if nothing was left to store, or if that does not happen within two minutes)."""
    began = time.monotonic()
    mark = before or 0
    while time.monotonic() - began < 120:
        now = await _stored(url)
        if now is not None and now > mark:
            kill.recovered_s = time.monotonic() - began
            return
        if now is not None and now >= len(feed.tried) and feed.began is not None:
            return  # everything sent is stored: nothing to recover
        await asyncio.sleep(0.2)


async def _has_stored(url: str) -> bool:
    return bool(await _stored(url))


async def _at_least(url: str, n: int) -> bool:
    now = await _stored(url)
    return now is not None and now >= n


async def _trainer_done(kafka: KafkaSettings, url: str) -> bool:
    """The trainer's group has committed every batch-loaded event, at least one run is
    recorded, and none is left running."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    topic = kafka.topic_name(BATCH_LOADED)
    partitions = [TopicPartition(topic, p) for p in range(BATCH_LOADED.partitions)]
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(TRAINER_GROUP)
        finally:
            await admin.close()
        consumer = make_consumer(kafka, [], group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        if any(committed.get(tp) is None or committed[tp].offset < ends[tp] for tp in partitions):
            return False
        conn = await asyncpg.connect(url)
    except Exception:
        return False
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'running') AS running, count(*) AS runs"
            " FROM ml.training_runs"
        )
        return row is not None and row["running"] == 0 and row["runs"] > 0
    finally:
        await conn.close()


async def _backup_and_restore(
    report: ChaosReport,
    env_vars: dict[str, str],
    sink: Service,
    pg: PostgresSettings,
    workdir: Path,
) -> None:
    """A backup now; a few seconds more of the stream; then the sink is killed, the backup
    restored into the live database, and the sink started again."""
    from metalcast_backup.bootstrap import build_service
    from metalcast_backup.config import BackupSection, BackupSettings
    from metalcast_core import S3Settings

    settings = BackupSettings(
        postgres=pg,
        kafka=KafkaSettings(bootstrap_servers=env_vars["METALCAST_KAFKA__BOOTSTRAP_SERVERS"]),
        s3=S3Settings.model_validate(
            {
                "endpoint_url": env_vars["METALCAST_S3__ENDPOINT_URL"],
                "access_key_id": env_vars["METALCAST_S3__ACCESS_KEY_ID"],
                "secret_access_key": env_vars["METALCAST_S3__SECRET_ACCESS_KEY"],
            }
        ),
        backup=BackupSection(pg_bin_dir=Path(stack.postgres_bin_dir())),
    )
    service = build_service(settings)
    manifest = await service.run()
    await asyncio.sleep(4)
    began = time.monotonic()
    sink.kill()
    restored = await service.restore(manifest.backup_id, pg.url.rsplit("/", 1)[1], force=True)
    sink.start()
    report.restore_s = time.monotonic() - began
    report.restore_lines = restored.lines()


async def _count(
    report: ChaosReport, feed: Feed, pg: PostgresSettings, kafka: KafkaSettings
) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        rows = await conn.fetch(
            "SELECT symbol, observed_at FROM prices.ticks WHERE source = $1", SOURCE
        )
        stored = collections.Counter(_index(r["symbol"], r["observed_at"], feed.base) for r in rows)
        report.published = len(feed.tried)
        report.acked = len(feed.acked)
        report.stored = len(stored)
        report.lost = len(feed.acked - set(stored))
        report.duplicated = sum(n - 1 for n in stored.values() if n > 1)
        report.unexpected = len(set(stored) - feed.tried)
        report.hourly_rows = int(await conn.fetchval("SELECT count(*) FROM analytics.metal_prices"))
        report.hourly_wrong = int(await conn.fetchval(_HOURLY_CHECK))
        batch_ids = {
            r["batch_id"] for r in await conn.fetch("SELECT batch_id FROM pipeline.batches")
        }
        report.runs = int(await conn.fetchval("SELECT count(*) FROM ml.training_runs"))
        report.runs_open = int(
            await conn.fetchval("SELECT count(*) FROM ml.training_runs WHERE status = 'running'")
        )
    finally:
        await conn.close()
    events = collections.Counter(
        BATCH_LOADED.decode(v).batch_id for v in await _read_topic(kafka, BATCH_LOADED.name)
    )
    report.batches = len(batch_ids)
    report.events_missing = sum(1 for b in batch_ids if events[b] == 0)
    report.events_duplicated = sum(1 for b in batch_ids if events[b] > 1)
    report.events_undone = sum(1 for b in events if b not in batch_ids)
    letters = [TICKS_DLQ.decode(v) for v in await _read_topic(kafka, TICKS_DLQ.name)]
    originals = [d.original for d in letters]
    report.poison_sent = len(feed.poison)
    report.poison_dead_lettered = sum(
        1 for pill in feed.poison if any(o and pill.startswith(o) for o in originals)
    )


# Every hour and metal: the stored value against the hourly rule recomputed from the ticks
# (the last spot USD tick of the hour; on a tie, the source that sorts first).
_PICKS = ", ".join(f"max(price) FILTER (WHERE symbol = '{m.symbol}') AS {m.column}" for m in METALS)
_HOURLY_CHECK = f"""
WITH last AS (
    SELECT DISTINCT ON (symbol, date_trunc('hour', observed_at, 'UTC'))
        symbol, date_trunc('hour', observed_at, 'UTC') AS ts, price
    FROM prices.ticks
    WHERE instrument = 'spot' AND currency = 'USD'
      AND symbol IN ({", ".join(f"'{m.symbol}'" for m in METALS)})
    ORDER BY symbol, date_trunc('hour', observed_at, 'UTC'), observed_at DESC, source
),
expected AS (
    SELECT ts, {_PICKS}
    FROM last GROUP BY ts
)
SELECT count(*) FROM expected e FULL JOIN analytics.metal_prices a USING (ts)
WHERE {" OR ".join(f"e.{m.column} IS DISTINCT FROM a.{m.column}" for m in METALS)}
"""


async def _read_topic(kafka: KafkaSettings, name: str) -> list[bytes]:
    from aiokafka import TopicPartition

    consumer = make_consumer(kafka, [], group_id=None)
    await consumer.start()
    try:
        topics = await consumer.topics()
        if name not in topics:
            return []
        count = len(consumer.partitions_for_topic(name) or {0})
        partitions = [TopicPartition(name, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            fetched = await consumer.getmany(timeout_ms=1_000)
            values += [r.value for records in fetched.values() for r in records if r.value]
        return values
    finally:
        await consumer.stop()


def private_config(root: Path, ports: dict[str, int] | None = None) -> StackConfig:
    """A stack in ``root`` on free ports (every ``*_port`` of :class:`StackConfig`, or those
    ``ports`` names, e.g. ``{"pg_port": 21432}``), sharing the download cache."""
    import dataclasses
    import socket

    taken: set[int] = set()

    def free() -> int:
        for _ in range(200):
            port = random.randint(20_000, 32_000)
            if port in taken:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            taken.add(port)
            return port
        raise RuntimeError("no free port")

    chosen = ports or {}
    base = dataclasses.replace(
        StackConfig.from_environ(), stack_dir=root, s3_implementation="minio"
    )
    fields = [f.name for f in dataclasses.fields(StackConfig) if f.name.endswith("_port")]
    updates: dict[str, Any] = {name: chosen.get(name) or free() for name in fields}
    return dataclasses.replace(base, **updates)


def print_report(report: ChaosReport, out: Callable[[str], Any] = print) -> None:
    for line in report.lines():
        out(line)
