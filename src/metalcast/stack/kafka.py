"""Apache Kafka 4.1.1 in KRaft mode (one node, broker and controller), from Maven Central jars.

compose.yaml runs the ``apache/kafka:4.1.1`` image. Here the same release's jars are fetched once
with Maven (``infra/kafka/pom.xml``) into the cache and run with the system's Java 17+.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from metalcast.stack._paths import repo_root
from metalcast.stack._process import (
    StackError,
    fail,
    port_open,
    run,
    run_async,
    spawn,
    write_pid,
)
from metalcast.stack._server import Server, file_lock, report_activity
from metalcast_core import ALL_TOPICS, KafkaSettings, ensure_topics

VERSION = "4.1.1"
HEAP = "-Xmx512m"

_LOG4J2 = """\
# Written by metalcast.stack: everything to stdout, which the stack sends to the log file.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.netclient.name = org.apache.kafka.clients.NetworkClient
logger.netclient.level = WARN
# Per-partition and config-dump lines: thousands once tests create topics of their own.
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.partition.name = kafka.cluster.Partition
logger.partition.level = WARN
logger.logs.name = org.apache.kafka.storage.internals.log
logger.logs.level = WARN
logger.unifiedlog.name = kafka.log
logger.unifiedlog.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    found = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if found is None:
        raise StackError("Kafka needs Java 17 or newer: no java on PATH or in JAVA_HOME")
    out = subprocess.run([found, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise StackError(f"Kafka {VERSION} needs Java 17 or newer; {found} says: {out.strip()}")
    return found


def new_cluster_id() -> str:
    """A random KRaft cluster id (a UUID in URL-safe base64, as ``kafka-storage random-uuid``
    makes) that does not start with ``-``: the storage tool would read such an id as an
    option, and one fresh stack in 64 failed to start."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


class Kafka(Server):
    name = "kafka"
    implementation = f"apache-kafka-{VERSION}"
    stop_timeout_s = 30.0
    ready_timeout_s = 120.0

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.kafka_port}"

    @property
    def controller_address(self) -> str:
        return f"{self.config.host}:{self.config.kafka_controller_port}"

    def ports(self) -> list[int]:
        return [self.config.kafka_port, self.config.kafka_controller_port]

    @property
    def properties(self) -> Path:
        return self.paths.root / "server.properties"

    @property
    def marker(self) -> str:
        return str(self.properties)

    @property
    def home(self) -> Path:
        return self.config.cache_dir / f"kafka-{VERSION}"

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    def install(self) -> None:
        done = self.home / ".complete"
        if done.is_file():
            return
        with file_lock(self.config.cache_dir / f".kafka-{VERSION}.lock"):
            if done.is_file():
                return
            mvn = shutil.which("mvn")
            if mvn is None:
                raise StackError("fetching Kafka's jars needs Maven (mvn) on PATH")
            pom = repo_root() / "infra" / "kafka" / "pom.xml"
            if not pom.is_file():
                raise StackError(f"missing {pom}")
            report_activity(
                "kafka", "fetching the broker's jars from Maven Central (first time only, ~10 s)"
            )
            self.home.mkdir(parents=True, exist_ok=True)
            staging = self.home / "libs.partial"
            shutil.rmtree(staging, ignore_errors=True)
            self.paths.root.mkdir(parents=True, exist_ok=True)
            run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}",
                ],
                self.paths.log,
                what=f"fetching Kafka {VERSION} jars with Maven",
                timeout_s=900,
            )
            if not (staging / f"kafka_2.13-{VERSION}.jar").is_file():
                raise fail("Maven finished but brought no kafka_2.13 jar", self.paths.log)
            shutil.rmtree(self.libs, ignore_errors=True)
            staging.rename(self.libs)
            done.write_text(f"{VERSION}\n")

    def _write_config(self) -> None:
        data = self.paths.data
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # A static voter set: the controller's address comes from this file, so a later
            # port change needs no re-format (a dynamic quorum stores it in the metadata log).
            "controller.quorum.voters": f"1@{self.controller_address}",
            "listeners": f"PLAINTEXT://{self.address},CONTROLLER://{self.controller_address}",
            "advertised.listeners": f"PLAINTEXT://{self.address}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "3",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "log.retention.hours": "168",
        }
        self.properties.write_text(
            "# Written by metalcast.stack on every start; edits are lost.\n"
            + "".join(f"{k}={v}\n" for k, v in settings.items())
        )
        (self.paths.root / "log4j2.properties").write_text(_LOG4J2)

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            java(),
            "-Xms128m",
            HEAP,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.paths.root / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.paths.root}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def launch(self) -> None:
        self._write_config()
        if not (self.paths.data / "meta.properties").is_file():
            self.paths.data.mkdir(parents=True, exist_ok=True)
            cluster_id = new_cluster_id()
            run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    cluster_id,
                    "--config",
                    str(self.properties),
                    "--ignore-formatted",
                ),
                self.paths.log,
                what="formatting Kafka's KRaft storage",
                timeout_s=120,
            )
        proc = spawn(
            self._java("kafka.Kafka", str(self.properties)),
            self.paths.log,
            cwd=self.paths.root,
        )
        write_pid(self.paths.pid, proc.pid)

    def ready(self) -> bool:
        if not port_open(self.config.host, self.config.kafka_port):
            return False
        return run_async(answers_metadata(self.settings(), timeout_s=5.0))

    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.address, client_id="metalcast-stack")

    def setup(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                run_async(asyncio.wait_for(ensure_topics(self.settings()), 30))
                run_async(wait_for_topics(self.settings(), [t.name for t in ALL_TOPICS]))
                return
            except Exception as exc:  # the broker may still be registering itself
                if time.monotonic() > deadline:
                    raise fail(f"creating the topics failed: {exc!r}", self.paths.log) from exc
                time.sleep(0.5)


async def answers_metadata(settings: KafkaSettings, timeout_s: float) -> bool:
    """A real Metadata request (ApiVersions first) through aiokafka's admin client."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def wait_for_topics(
    settings: KafkaSettings, names: Iterable[str], timeout_s: float = 15.0
) -> None:
    """Wait until every topic in ``names`` is in the broker's metadata with a leader for each
    partition. CreateTopics returns once the controller committed the topics; the broker
    follows a moment later, and a producer that comes first gets NotLeaderForPartition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    wanted = sorted(set(names))
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id=settings.client_id
    )
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            described = await admin.describe_topics(wanted)
            if len(described) == len(wanted) and all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                for t in described
            ):
                break
            if loop.time() > deadline:
                raise TimeoutError(f"topics {wanted} have no leaders after {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    # The metadata cache names the leader a moment before the leader's replica manager hosts
    # the partition: ListOffsets, answered by the leader itself, only succeeds after that.
    partitions = [
        TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]
    ]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        request_timeout_ms=int(timeout_s * 1000),
    )
    await consumer.start()
    try:
        await asyncio.wait_for(consumer.end_offsets(partitions), timeout_s)
    finally:
        await consumer.stop()
