"""Helpers shared by the integration and end-to-end tests (not fixtures: plain functions)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import FastAPI

from metalcast_core import (
    KafkaSettings,
    PostgresSettings,
    S3Settings,
    Topic,
    make_consumer,
    make_producer,
)
from metalcast_ingestor.publisher import TickPublisher
from metalcast_sink.config import SinkSection, SinkSettings

FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def as_role(pg: PostgresSettings, role: str) -> PostgresSettings:
    """The same database, each session switched to ``role`` as it connects (the libpq
    ``options`` parameter, which asyncpg and pg_dump both send): a service's grants without
    a login user. Role attributes (CREATEDB) are not in effect this way: see ``login_user``."""
    return pg.model_copy(update={"url": f"{pg.url}?options=-c%20role%3D{role}"})


@asynccontextmanager
async def login_user(
    pg: PostgresSettings, group: str, attributes: str = ""
) -> AsyncIterator[PostgresSettings]:
    """A LOGIN user, member of ``group`` (as production's are), dropped afterwards; the local
    stack trusts 127.0.0.1, so no password."""
    name = f"{group}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.with_database("postgres").url)
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN {attributes} IN ROLE "{group}"')
        try:
            yield pg.model_copy(update={"url": pg.url.replace("://postgres@", f"://{name}@")})
        finally:
            await admin.execute(f'DROP ROLE "{name}"')
    finally:
        await admin.close()


def sink_settings(pg: PostgresSettings, kafka: KafkaSettings, **sink: Any) -> SinkSettings:
    sink.setdefault("metrics_port", 0)  # no /metrics server unless a test asks for one
    return SinkSettings(
        postgres=pg,
        kafka=kafka,
        sink=SinkSection(group_id=f"sink-{uuid.uuid4().hex[:8]}", **sink),
    )


@asynccontextmanager
async def publisher(kafka: KafkaSettings, known: Sequence[str]) -> AsyncIterator[TickPublisher]:
    producer = make_producer(kafka)
    await producer.start()
    try:
        yield TickPublisher(producer, kafka, known)
    finally:
        await producer.stop()


async def produce_raw(
    kafka: KafkaSettings, topic: Topic[Any], items: Sequence[tuple[bytes, bytes]]
) -> None:
    producer = make_producer(kafka, max_request_size=8 << 20)  # the topic's limit decides
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(kafka.topic_name(topic), value, key=key)
    finally:
        await producer.stop()


async def read_all(kafka: KafkaSettings, topic: Topic[Any], timeout_s: float = 10.0) -> list[bytes]:
    """Every message currently in ``topic`` (reads from the start to the end offsets)."""
    consumer: AIOKafkaConsumer = make_consumer(kafka, [], group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        name = kafka.topic_name(topic)
        partitions = consumer.partitions_for_topic(name) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"could not read {name} to its end")
            batch = await consumer.getmany(timeout_ms=500)
            out.extend(r.value for recs in batch.values() for r in recs if r.value is not None)
        return out
    finally:
        await consumer.stop()


async def fetchval(pg: PostgresSettings, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(pg.url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def fetch(pg: PostgresSettings, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg.url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 from a thread with its own event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


async def http_get(port: int, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Status and body of ``GET path`` on 127.0.0.1:port (a worker's /metrics or /healthz)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A worker's /metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = await http_get(port, "/metrics")
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def port_closed(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


@asynccontextmanager
async def s3_identities(
    root: S3Settings, bulk_bucket: str | None = None
) -> AsyncIterator[dict[str, S3Settings]]:
    """The services' S3 identities (metalcast.stack.s3_identities) for ``root``'s buckets
    (a test's own; the bulk bucket: ``bulk_bucket``, default ``<models bucket>-bulk``), under
    keys and policy names of their own; service -> its S3 settings."""
    from metalcast.stack.s3_identities import (
        IDENTITIES,
        ensure_identities,
        remove_identities,
    )

    tag = uuid.uuid4().hex[:8]
    own = [
        replace(i, access_key=f"{i.access_key}-{tag}", secret_key=f"{i.secret_key}-{tag}")
        for i in IDENTITIES
    ]
    bulk = bulk_bucket or f"{root.models_bucket}-bulk"
    await asyncio.to_thread(ensure_identities, root, own, policy_prefix=f"{tag}-", bulk_bucket=bulk)
    try:
        yield {i.service: i.settings(root) for i in own}
    finally:
        await asyncio.to_thread(remove_identities, root, own, policy_prefix=f"{tag}-")
