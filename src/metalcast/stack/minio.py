"""MinIO, the S3 server compose.yaml runs, built once from the Go module proxy into the cache."""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import SecretStr

from metalcast.stack._paths import StackConfig
from metalcast.stack._process import StackError, fail, run, spawn, write_pid
from metalcast.stack._server import Server, file_lock, report_activity
from metalcast_core import S3Settings, ensure_buckets, make_s3_client

MODULE = "github.com/minio/minio"
VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
ACCESS_KEY = "metalcast"
SECRET_KEY = "metalcast-local-secret"
REGION = "us-east-1"
MODELS_BUCKET = "metalcast-models"
BACKUPS_BUCKET = "metalcast-backups"


def s3_settings(config: StackConfig) -> S3Settings:
    """The S3 section of the services' settings for this stack."""
    return S3Settings(
        endpoint_url=f"http://{config.host}:{config.s3_port}",
        access_key_id=SecretStr(ACCESS_KEY),
        secret_access_key=SecretStr(SECRET_KEY),
        region=REGION,
        models_bucket=MODELS_BUCKET,
        backups_bucket=BACKUPS_BUCKET,
    )


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


class S3Server(Server):
    """An S3 server: the stack reports it as ``s3`` whichever implementation runs."""

    name = "s3"

    @property
    def state_name(self) -> str:
        return self.implementation

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.s3_port}"

    @property
    def marker(self) -> str:
        return str(self.paths.data)

    def setup(self) -> None:
        settings = s3_settings(self.config)
        ensure_buckets(make_s3_client(settings), settings)


class MinIO(S3Server):
    implementation = "minio"
    stop_timeout_s = 20.0
    ready_timeout_s = 60.0

    def ports(self) -> list[int]:
        return [self.config.s3_port, self.config.s3_console_port]

    # A second instance (metalcast.stack.offsite) overrides these two, the address and setup.
    @property
    def console_port(self) -> int:
        return self.config.s3_console_port

    def root_credentials(self) -> tuple[str, str]:
        return ACCESS_KEY, SECRET_KEY

    @property
    def binary(self) -> Path:
        return self.config.cache_dir / f"minio-{VERSION}" / "bin" / "minio"

    def install(self) -> None:
        if self.binary.is_file():
            return
        with file_lock(self.config.cache_dir / f".minio-{VERSION}.lock"):
            if self.binary.is_file():
                return
            go = shutil.which("go")
            if go is None:
                raise StackError("building MinIO needs Go on PATH")
            self.paths.root.mkdir(parents=True, exist_ok=True)
            self.binary.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "GOBIN": str(self.binary.parent), "CGO_ENABLED": "0"}
            # About 3.5 minutes on two cores the first time; then the binary is cached.
            report_activity(
                "s3",
                f"building MinIO from the Go module proxy (first time only: usually 3-5 min "
                f"on 2 cores, then cached in {self.binary.parent})",
            )
            run(
                [go, "install", f"{MODULE}@{VERSION}"],
                self.paths.log,
                env=env,
                what=f"building MinIO {VERSION} (go install)",
                timeout_s=1800,
            )
            if not self.binary.is_file():
                raise fail("go install finished but left no minio binary", self.paths.log)

    def launch(self) -> None:
        self.paths.data.mkdir(parents=True, exist_ok=True)
        root_user, root_password = self.root_credentials()
        env = {
            **os.environ,
            "MINIO_ROOT_USER": root_user,
            "MINIO_ROOT_PASSWORD": root_password,
            "MINIO_REGION": REGION,
            "MINIO_UPDATE": "off",
        }
        proc = spawn(
            [
                str(self.binary),
                "server",
                str(self.paths.data),
                "--address",
                self.address,
                "--console-address",
                f"{self.config.host}:{self.console_port}",
            ],
            self.paths.log,
            env=env,
            cwd=self.paths.root,
        )
        write_pid(self.paths.pid, proc.pid)

    def ready(self) -> bool:
        return http_ok(f"http://{self.address}/minio/health/ready")

    def setup(self) -> None:
        super().setup()
        from metalcast.stack.s3_identities import ensure_identities  # one S3 user per service

        ensure_identities(s3_settings(self.config))
