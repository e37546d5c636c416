"""The sink on real PostgreSQL and Kafka: idempotent writes, hourly rows, dead letters."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from metalcast_core import (
    BATCH_LOADED,
    METAL_SYMBOLS,
    TICKS,
    TICKS_DLQ,
    BatchLoaded,
    DeadLetter,
    KafkaSettings,
    PostgresSettings,
    PriceTick,
    connect,
    make_consumer,
    make_producer,
)
from metalcast_sink.bootstrap import run_sink
from metalcast_sink.service import Decoded, Sink
from metalcast_sink.writer import write_batch
from tests.support import (
    FAST_GROUP,
    fetch,
    fetchval,
    produce_raw,
    publisher,
    read_all,
    sink_settings,
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def hourly_ticks(hours: int, symbols: tuple[str, ...] = METAL_SYMBOLS) -> list[PriceTick]:
    levels = {"XAU": 2650.0, "XAG": 31.0, "XPT": 960.0, "XPD": 1000.0, "BTC": 90000.0}
    return [
        PriceTick(
            symbol=s,
            source="test",
            observed_at=T0 + timedelta(hours=h, minutes=5),
            price=levels[s] + h * 0.25,
        )
        for h in range(hours)
        for s in symbols
    ]


async def test_ticks_land_once_with_hourly_rows_and_training_window(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    ticks = hourly_ticks(30)
    settings = sink_settings(pg_settings, kafka_settings)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(ticks)
        await pub.publish(ticks)  # the same ticks again
    stats = await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)

    assert stats.ticks_received == 240
    assert stats.rows_inserted == 120
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == 120
    rows = await fetch(pg_settings, "SELECT * FROM analytics.metal_prices ORDER BY ts")
    assert len(rows) == 30
    assert rows[0]["ts"] == T0
    assert all(r[c] is not None for r in rows for c in ("xau", "xag", "xpt", "xpd"))
    assert float(rows[-1]["xau"]) == pytest.approx(2650.0 + 29 * 0.25)
    window = await fetch(pg_settings, "SELECT ts FROM ml.metal_prices_training")
    assert [r["ts"] for r in window] == [T0 + timedelta(hours=h) for h in range(18, 30)]

    # The batch-loaded events account for every inserted row, and the outbox is drained.
    events = [BATCH_LOADED.decode(v) for v in await read_all(kafka_settings, BATCH_LOADED)]
    assert sum(e.rows_inserted for e in events) == 120
    assert min(e.first_hour for e in events if e.first_hour) == T0
    assert max(e.last_hour for e in events if e.last_hour) == T0 + timedelta(hours=29)
    unpublished = "SELECT count(*) FROM pipeline.batches WHERE published_at IS NULL"
    assert await fetchval(pg_settings, unpublished) == 0

    # A second sink in a new group resumes where the database says it has read up to.
    resumed = await run_sink(
        sink_settings(pg_settings, kafka_settings), until_idle=True, consumer_options=FAST_GROUP
    )
    assert resumed.ticks_received == 0
    stored = "SELECT sum(next_offset) FROM pipeline.consumer_positions WHERE consumer = 'sink'"
    assert await fetchval(pg_settings, stored) == 240

    # Without stored positions, a new group re-reads everything: nothing new, no event.
    await fetchval(pg_settings, "DELETE FROM pipeline.consumer_positions RETURNING 1")
    again = await run_sink(
        sink_settings(pg_settings, kafka_settings), until_idle=True, consumer_options=FAST_GROUP
    )
    assert again.ticks_received == 240
    assert again.rows_inserted == 0
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == 120
    assert len(await read_all(kafka_settings, BATCH_LOADED)) == len(events)


async def test_hourly_value_is_the_last_spot_tick_of_the_hour(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    hour = T0 + timedelta(hours=5)
    ticks = [
        PriceTick(symbol="XAU", source="a", observed_at=hour + timedelta(minutes=10), price=10.0),
        PriceTick(symbol="XAU", source="b", observed_at=hour + timedelta(minutes=50), price=20.0),
        PriceTick(
            symbol="XAU",
            source="c",
            instrument="futures",
            observed_at=hour + timedelta(minutes=59),
            price=99.0,
        ),
        PriceTick(symbol="XAG", source="a", observed_at=hour + timedelta(minutes=1), price=30.0),
        PriceTick(symbol="BTC", source="a", observed_at=hour, price=90000.0),
    ]
    settings = sink_settings(pg_settings, kafka_settings)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(ticks[:2])
    await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(ticks[2:])  # a later batch touching the same hour
    await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)

    row = (await fetch(pg_settings, "SELECT * FROM analytics.metal_prices"))[0]
    assert row["ts"] == hour
    assert (float(row["xau"]), float(row["xag"])) == (20.0, 30.0)
    assert row["xpt"] is None
    assert row["xpd"] is None
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == 5


BAD_MESSAGES: list[tuple[str, bytes]] = [
    ("malformed JSON", b'{"symbol": "XAU", "price": '),
    ("HTML", b"<html><body>502 Bad Gateway</body></html>"),
    (
        "unknown symbol",
        json.dumps(
            {"symbol": "XYZ", "source": "t", "observed_at": "2026-11-01T00:00:00Z", "price": 1.0}
        ).encode(),
    ),
    (
        "price 0",
        json.dumps(
            {"symbol": "XAU", "source": "t", "observed_at": "2026-11-01T00:00:00Z", "price": 0}
        ).encode(),
    ),
    (
        "negative price",
        json.dumps(
            {"symbol": "XAU", "source": "t", "observed_at": "2026-11-01T00:00:00Z", "price": -5.0}
        ).encode(),
    ),
    (
        "NaN price",
        b'{"symbol": "XAU", "source": "t", "observed_at": "2026-11-01T00:00:00Z", "price": NaN}',
    ),
    (
        "string price",
        json.dumps(
            {
                "symbol": "XAU",
                "source": "t",
                "observed_at": "2026-11-01T00:00:00Z",
                "price": "2650.1",
            }
        ).encode(),
    ),
    (
        "future timestamp",
        json.dumps(
            {"symbol": "XAU", "source": "t", "observed_at": "2999-01-01T00:00:00Z", "price": 1.0}
        ).encode(),
    ),
    (
        "naive timestamp",
        json.dumps(
            {"symbol": "XAU", "source": "t", "observed_at": "2026-11-01T00:00:00", "price": 1.0}
        ).encode(),
    ),
    ("empty", b""),
]


async def test_bad_messages_go_to_the_dlq_and_the_good_ones_around_them_land(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    good = hourly_ticks(3, ("XAU",))
    items: list[tuple[bytes, bytes]] = [(b"XAU", TICKS.encode(good[0]))]
    for _, raw in BAD_MESSAGES:
        items.append((b"XAU", raw))
    items += [(b"XAU", TICKS.encode(t)) for t in good[1:]]
    await produce_raw(kafka_settings, TICKS, items)

    stats = await run_sink(
        sink_settings(pg_settings, kafka_settings), until_idle=True, consumer_options=FAST_GROUP
    )

    assert stats.dead_lettered == len(BAD_MESSAGES)
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == 3
    letters = [TICKS_DLQ.decode(v) for v in await read_all(kafka_settings, TICKS_DLQ)]
    assert sorted(d.original for d in letters) == sorted(raw for _, raw in BAD_MESSAGES)
    assert all(d.stage == "sink" and d.reason and d.offset is not None for d in letters)
    by_original = {d.original: d.reason for d in letters}
    assert "unknown symbol" in by_original[BAD_MESSAGES[2][1]]
    assert "greater than 0" in by_original[BAD_MESSAGES[3][1]]
    assert "future" in by_original[BAD_MESSAGES[7][1]]


@pytest.mark.parametrize("size", [896_001, 2 << 20], ids=["896KB", "2MB"])
async def test_a_poison_pill_too_large_to_dead_letter_whole_does_not_stop_the_partition(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings, size: int
) -> None:
    """900 KB or 2 MB that is not JSON (the ticks topic admits up to 4 MiB): base64-encoded
    whole, its dead letter would exceed the DLQ's 1 MiB limit and the sink would die on it at
    every restart. It is dead-lettered cut, with its size and sha256, its offset committed,
    and the ticks behind it land."""
    import hashlib

    good = hourly_ticks(2, ("XAU",))
    pill = (b"\xff" + bytes(range(256)) * (size // 256 + 1))[:size]  # not UTF-8, not JSON
    await produce_raw(
        kafka_settings,
        TICKS,
        [(b"XAU", TICKS.encode(good[0])), (b"XAU", pill), (b"XAU", TICKS.encode(good[1]))],
    )
    settings = sink_settings(pg_settings, kafka_settings)
    stats = await asyncio.wait_for(
        run_sink(settings, until_idle=True, consumer_options=FAST_GROUP), 120
    )
    assert stats.dead_lettered == 1
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == 2
    [letter] = [TICKS_DLQ.decode(v) for v in await read_all(kafka_settings, TICKS_DLQ)]
    assert letter.truncated
    assert (letter.original_size, letter.original_sha256) == (
        len(pill),
        hashlib.sha256(pill).hexdigest(),
    )
    assert pill.startswith(letter.original)
    # Committed past it: a second run reads nothing again.
    again = await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    assert (again.ticks_received, again.dead_lettered) == (0, 0)


async def test_a_tick_the_database_refuses_is_isolated_into_the_dlq(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    # A valid event the table's CHECK refuses (currency not in upper case is impossible by
    # contract, so tighten the table instead): the batch still lands, the tick is dead-lettered.
    conn = await asyncpg.connect(pg_settings.url)
    await conn.execute("ALTER TABLE prices.ticks ADD CONSTRAINT no_xag CHECK (symbol <> 'XAG')")
    await conn.close()
    ticks = hourly_ticks(2, ("XAU", "XAG"))
    settings = sink_settings(pg_settings, kafka_settings)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(ticks)
    stats = await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    assert stats.rows_inserted == 2
    assert stats.dead_lettered == 2
    letters = [TICKS_DLQ.decode(v) for v in await read_all(kafka_settings, TICKS_DLQ)]
    assert {TICKS.decode(d.original).symbol for d in letters} == {"XAG"}
    assert all("no_xag" in d.reason for d in letters)
    # The bytes exactly as received, and where they were.
    assert sorted(d.original for d in letters) == sorted(
        TICKS.encode(t) for t in ticks if t.symbol == "XAG"
    )
    assert all(d.partition is not None and d.offset is not None for d in letters)


async def test_a_replayed_older_tick_does_not_take_over_its_hour(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    # A batch mixing a replay (an hour's earlier tick, already stored) with new ticks takes
    # the general path; the replayed hour keeps its latest tick's price.
    hour = T0 + timedelta(hours=5)
    early = PriceTick(
        symbol="XAU", source="a", observed_at=hour + timedelta(minutes=10), price=10.0
    )
    late = PriceTick(symbol="XAU", source="a", observed_at=hour + timedelta(minutes=50), price=20.0)
    later = PriceTick(symbol="XAU", source="a", observed_at=hour + timedelta(hours=1), price=30.0)
    settings = sink_settings(pg_settings, kafka_settings)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish([early, late])
    await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish([early, later])
    stats = await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)

    assert stats.rows_inserted == 1
    rows = await fetch(pg_settings, "SELECT ts, xau FROM analytics.metal_prices ORDER BY ts")
    assert [(r["ts"], float(r["xau"])) for r in rows] == [
        (hour, 20.0),
        (hour + timedelta(hours=1), 30.0),
    ]


async def test_every_column_lands_as_sent_and_prices_as_the_numbers_sent(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    # Columns that vary within a batch and columns one value for all of it take different
    # routes into the table; prices travel as floats and must land as the decimals sent.
    prices = [2650.123456789, 0.1 + 0.2, 1234567.12345678, 31.005, 1e-8, 999999999999999.9]
    varied = [
        PriceTick(
            symbol=s,
            source=src,
            instrument=ins,
            observed_at=T0 + timedelta(minutes=i),
            price=p,
            currency=cur,
            fetched_at=T0 + timedelta(minutes=i, microseconds=7),
            raw=raw,
        )
        for i, (p, s, src, ins, cur, raw) in enumerate(
            zip(
                prices,
                ["XAU", "XAG", "BTC", "XAU", "XPT", "XAU"],
                ["a", "b", "a", "c", "a", "a"],
                ["spot", "spot", "spot", "futures", "spot", "spot"],
                ["USD", "USD", "USD", "USD", "EUR", "USD"],
                [None, {}, {"p": 1.5, "s": "é"}, None, {"n": [1, None]}, None],
                strict=True,
            )
        )
    ]
    uniform = [
        PriceTick(symbol="XPD", source="u", observed_at=T0 + timedelta(hours=h), price=p)
        for h, p in enumerate(prices)
    ]
    settings = sink_settings(pg_settings, kafka_settings)
    for ticks in (varied, uniform):
        async with publisher(kafka_settings, settings.known_symbols) as pub:
            await pub.publish(ticks)
        await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
        conn = await asyncpg.connect(pg_settings.url)
        try:
            for t in ticks:
                row = await conn.fetchrow(
                    "SELECT *, $4::numeric(24, 8) AS sent FROM prices.ticks "
                    "WHERE symbol = $1 AND observed_at = $2 AND source = $3",
                    t.symbol,
                    t.observed_at,
                    t.source,
                    Decimal(repr(t.price)),
                )
                assert row is not None, t
                assert row["price"] == row["sent"], t
                assert (row["instrument"], row["currency"], row["fetched_at"]) == (
                    t.instrument,
                    t.currency,
                    t.fetched_at,
                )
                assert (None if row["raw"] is None else json.loads(row["raw"])) == t.raw
        finally:
            await conn.close()


async def test_database_connection_lost_mid_stream_retries_without_losing_ticks(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    settings = sink_settings(pg_settings, kafka_settings, max_batch=50, db_retry_initial_s=0.05)
    ticks = hourly_ticks(100)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(ticks)

    admin = await asyncpg.connect(pg_settings.url)
    refused = 0

    async def flaky_connect() -> asyncpg.Connection:
        # The first attempts find the database "down": connection refused for real, on a
        # closed port. Later, the server kills our session (pg_terminate_backend) mid-run.
        nonlocal refused
        if refused < 3:
            refused += 1
            return await asyncpg.connect(
                pg_settings.url.replace(":" + str(_port(pg_settings)), ":9")
            )
        return await connect(pg_settings)

    consumer = make_consumer(
        kafka_settings,
        [kafka_settings.topic_name(TICKS)],
        settings.sink.group_id,
        max_poll_records=50,
        **FAST_GROUP,
    )
    producer = make_producer(kafka_settings)
    await producer.start()
    await consumer.start()
    try:
        sink = Sink(settings, consumer, producer, flaky_connect)
        store = sink.store
        killed = 0

        async def store_then_kill(batch: Decoded) -> None:
            # After the first batch (of at most 50: at least 50 ticks are still to store),
            # the server kills the sink's session for real. (After the second, the last batch
            # could already have been stored: nothing would use the dead session.)
            nonlocal killed
            await store(batch)
            if sink.stats.batches == 1:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )

        sink.store = store_then_kill  # type: ignore[method-assign]
        stats = await asyncio.wait_for(sink.run(until_idle=True), 60)
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.close()
    assert refused == 3
    assert killed == 1
    assert stats.db_retries >= 4
    assert await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == len(ticks)
    assert await fetchval(pg_settings, "SELECT count(*) FROM analytics.metal_prices") == 100


def _port(pg: PostgresSettings) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(pg.url).port
    assert port is not None
    return port


async def test_migrations_run_twice(pg_settings: PostgresSettings) -> None:
    from metalcast_core import ServiceSettings, migrate

    directory = ServiceSettings().migrations_dir
    assert await migrate(pg_settings, directory) == []  # the template already ran them
    assert await migrate(pg_settings, directory) == []
    assert math.isfinite(
        await fetchval(pg_settings, "SELECT count(*) FROM public.schema_migrations")
    )
    assert await fetchval(pg_settings, "SELECT count(*) FROM public.schema_migrations") >= 1


def test_dead_letter_round_trip() -> None:
    letter = DeadLetter(stage="sink", source="t", reason="r", original=b"\x00\xffraw")
    assert TICKS_DLQ.decode(TICKS_DLQ.encode(letter)).original == b"\x00\xffraw"


async def test_two_sinks_writing_the_same_hour_keep_each_others_metals(
    pg_settings: PostgresSettings,
) -> None:
    # Two sink instances own different partitions, so different metals. Sink A's batch
    # (gold) is not yet committed when sink B's batch (silver) for the same hour arrives:
    # B waits on the hour's row, and must not blank A's gold when it goes on.
    hour = T0 + timedelta(hours=3)
    gold = [PriceTick(symbol="XAU", source="a", observed_at=hour, price=2650.5)]
    silver = [PriceTick(symbol="XAG", source="a", observed_at=hour, price=31.25)]
    conn_a = await asyncpg.connect(pg_settings.url)
    conn_b = await asyncpg.connect(pg_settings.url)
    try:
        tx = conn_a.transaction()
        await tx.start()
        await write_batch(conn_a, gold)
        b = asyncio.create_task(write_batch(conn_b, silver))
        await asyncio.sleep(0.5)
        assert not b.done()  # B waits for A's row of that hour
        await tx.commit()
        await asyncio.wait_for(b, 10)
    finally:
        await conn_a.close()
        await conn_b.close()
    row = (await fetch(pg_settings, "SELECT * FROM analytics.metal_prices"))[0]
    assert (float(row["xau"]), float(row["xag"])) == (2650.5, 31.25)


async def test_sigterm_stops_a_sink_retrying_an_unreachable_database(
    kafka_settings: KafkaSettings,
) -> None:
    """The database never answers: the sink retries, naming the server and the attempt, and
    still stops within a few seconds of SIGTERM (compose's stop and rolling deploys)."""
    import os
    import signal
    import socket
    import sys
    import time

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    env = {
        **os.environ,
        "METALCAST_POSTGRES__URL": f"postgresql://postgres:hidden@127.0.0.1:{dead_port}/nowhere",
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "METALCAST_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "METALCAST_SINK__DB_RETRY_INITIAL_S": "0.2",
        "METALCAST_SINK__DB_RETRY_MAX_S": "30",
        "METALCAST_SINK__METRICS_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metalcast_sink",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any("unavailable (attempt 2" in line for line in seen):
            assert time.monotonic() < deadline, seen[-5:]
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, f"the sink exited early: {seen[-5:]}"
            seen.append(line.decode())
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        rest = await asyncio.wait_for(proc.communicate(), 15)
        stopped_in = time.monotonic() - began
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert stopped_in < 8, stopped_in
    assert proc.returncode in (0, 128 + signal.SIGTERM)
    retry = next(line for line in seen if "unavailable (attempt" in line)
    assert f"database 127.0.0.1:{dead_port}/nowhere unavailable (attempt 1" in retry
    assert "hidden" not in "".join(seen) + rest[1].decode()


async def test_the_outbox_relay_publishes_an_event_left_behind_while_the_sink_runs(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """A batch whose event was never published (a lost acknowledgement): the running sink's
    relay publishes it and marks it, without a restart; an event published normally is not
    published twice."""
    import uuid as uuid_

    await produce_raw(
        kafka_settings, TICKS, [(b"XAU", TICKS.encode(t)) for t in hourly_ticks(2, ("XAU",))]
    )
    settings = sink_settings(pg_settings, kafka_settings)
    settings = settings.model_copy(
        update={
            "sink": settings.sink.model_copy(update={"relay_every_s": 0.2, "relay_after_s": 1.0})
        }
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_sink(settings, stop=stop, consumer_options=FAST_GROUP))
    try:
        for _ in range(300):
            if await fetchval(pg_settings, "SELECT count(*) FROM prices.ticks") == 2:
                break
            await asyncio.sleep(0.05)
        lost = BatchLoaded(
            batch_id=uuid_.uuid4(),
            symbols=["XAG"],
            first_hour=T0,
            last_hour=T0,
            rows_inserted=1,
            ticks_received=1,
        )
        conn = await asyncpg.connect(pg_settings.url)
        try:
            await conn.execute(
                "INSERT INTO pipeline.batches (batch_id, loaded_at, symbols, first_hour, "
                "last_hour, ticks_received, rows_inserted, duplicates, dead_lettered, event) "
                "VALUES ($1, now() - interval '5 seconds', $2, $3, $3, 1, 1, 0, 0, $4::jsonb)",
                lost.batch_id,
                lost.symbols,
                T0,
                lost.model_dump_json(),
            )
        finally:
            await conn.close()
        for _ in range(200):
            published = await fetchval(
                pg_settings,
                "SELECT published_at IS NOT NULL FROM pipeline.batches WHERE batch_id = $1",
                lost.batch_id,
            )
            if published:
                break
            await asyncio.sleep(0.05)
        assert published
        await asyncio.sleep(2)  # more relay rounds: nothing else is republished
    finally:
        stop.set()
        stats = await asyncio.wait_for(task, 30)
    events = [BATCH_LOADED.decode(v) for v in await read_all(kafka_settings, BATCH_LOADED)]
    ids = [e.batch_id for e in events]
    assert ids.count(lost.batch_id) == 1
    assert len(ids) == len(set(ids))
    assert stats.relayed == 1
    unpublished = "SELECT count(*) FROM pipeline.batches WHERE published_at IS NULL"
    assert await fetchval(pg_settings, unpublished) == 0


async def test_dead_letters_are_listed_shown_and_replayed_once_fixed(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """A tick for a symbol not yet catalogued is dead-lettered; `metalcast sink dlq` lists and
    shows it; once the symbol is known, `replay` sends it back and the sink stores it once."""
    from typer.testing import CliRunner

    from metalcast_sink.cli import make_app

    stray = PriceTick(symbol="XRH", source="test", observed_at=T0, price=4800.0)
    await produce_raw(
        kafka_settings, TICKS, [(b"XRH", TICKS.encode(stray)), (b"x", b"not json at all")]
    )
    settings = sink_settings(pg_settings, kafka_settings)
    first = await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    assert first.dead_lettered == 2

    app = make_app(lambda: settings)
    runner = CliRunner()
    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list"])
    assert listed.exit_code == 0, listed.output
    assert "2 dead letter(s)" in listed.output
    assert "unknown symbol 'XRH'" in listed.output
    where = next(line.split()[0] for line in listed.output.splitlines() if "XRH" in line)
    shown = await asyncio.to_thread(runner.invoke, app, ["dlq", "show", where])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["original"] == TICKS.encode(stray).decode()

    dry = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "--dry-run"])
    assert "skip" in dry.output
    assert "the original is not JSON" in dry.output
    assert "would replay 1 of 2" in dry.output
    replayed = await asyncio.to_thread(
        runner.invoke, app, ["dlq", "replay", "--reason", "unknown symbol"]
    )
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1, skipped 0" in replayed.output

    fixed = settings.model_copy(update={"known_symbols": [*settings.known_symbols, "XRH"]})
    second = await run_sink(fixed, until_idle=True, consumer_options=FAST_GROUP)
    assert (second.ticks_received, second.dead_lettered) == (1, 0)
    rows = await fetch(pg_settings, "SELECT symbol, price FROM prices.ticks WHERE symbol = 'XRH'")
    assert [(r["symbol"], float(r["price"])) for r in rows] == [("XRH", 4800.0)]


async def test_an_event_published_but_left_unmarked_by_a_crash_is_not_published_again(
    pg_settings: PostgresSettings, kafka_settings: KafkaSettings
) -> None:
    """Killed after publishing a batch's event, before marking it: the outbox still says
    unpublished. The next start reads the topic back and only marks it: one event per batch.
    A batch whose event never reached the topic is published, once."""
    from metalcast_sink.writer import write_batch

    settings = sink_settings(pg_settings, kafka_settings)
    async with publisher(kafka_settings, settings.known_symbols) as pub:
        await pub.publish(hourly_ticks(3))
    await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    before = [BATCH_LOADED.decode(v).batch_id for v in await read_all(kafka_settings, BATCH_LOADED)]
    assert before
    conn = await asyncpg.connect(pg_settings.url)
    try:
        await conn.execute("UPDATE pipeline.batches SET published_at = NULL")  # as if killed
        late = PriceTick(
            symbol="XAG", source="test", observed_at=T0 + timedelta(days=1), price=30.0
        )
        never = await write_batch(conn, [late])
    finally:
        await conn.close()
    assert never is not None

    await run_sink(settings, until_idle=True, consumer_options=FAST_GROUP)
    after = [BATCH_LOADED.decode(v).batch_id for v in await read_all(kafka_settings, BATCH_LOADED)]
    assert sorted(map(str, after)) == sorted(map(str, [*before, never.batch_id]))
    unpublished = "SELECT count(*) FROM pipeline.batches WHERE published_at IS NULL"
    assert await fetchval(pg_settings, unpublished) == 0
