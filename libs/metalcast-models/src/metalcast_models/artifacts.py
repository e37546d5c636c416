"""Model files: one sktime zip per ticker, reloaded and checked before promotion.

An artifact is a pickle inside a zip (sktime's ``save``): load only files this trainer
wrote (their sha256 is recorded when saved), never files from elsewhere.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalcast_models._quiet import quiet_sktime

ARTIFACT_SUFFIX = ".zip"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True, slots=True)
class SavedArtifact:
    ticker: str
    path: Path
    sha256: str
    size_bytes: int


def artifact_path(directory: str | Path, ticker: str) -> Path:
    if not _SAFE_NAME.match(ticker):
        raise ValueError(f"{ticker!r} cannot be used as a file name")
    return Path(directory) / f"{ticker}{ARTIFACT_SUFFIX}"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_forecaster(forecaster: Any, directory: str | Path, ticker: str) -> SavedArtifact:
    """Write ``<directory>/<ticker>.zip`` atomically (temp folder, then rename)."""
    target = artifact_path(directory, ticker)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=target.parent))
    try:
        with quiet_sktime():
            forecaster.save(str(staging / ticker))  # sktime appends ".zip"
        os.replace(staging / f"{ticker}{ARTIFACT_SUFFIX}", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SavedArtifact(ticker, target, sha256_of(target), target.stat().st_size)


def load_forecaster(path: str | Path) -> Any:
    """Load a saved forecaster; ``path`` may name the ``.zip`` or leave the suffix out."""
    from sktime.base import load

    file = Path(path)
    if file.suffix != ARTIFACT_SUFFIX:
        file = file.with_name(file.name + ARTIFACT_SUFFIX)
    if not file.is_file():
        raise FileNotFoundError(file)
    # sktime's load takes a Path as the zip itself (a str would get ".zip" appended).
    with quiet_sktime():
        return load(file)


def check_artifact(
    path: str | Path,
    *,
    expected_sha256: str | None = None,
    one_step: Callable[[Any], float] | None = None,
) -> str | None:
    """``None`` if the file reloads and predicts one finite step; otherwise the reason.

    ``one_step`` predicts with the reloaded forecaster (a family's own one-step path,
    :meth:`Family.forecast_one`); by default sktime's generic ``predict``, which alone costs
    ~4-5 ms for a naive forecaster, as much as fitting and saving it."""
    try:
        if expected_sha256 is not None:
            actual = sha256_of(path)
            if actual != expected_sha256:
                return f"sha256 mismatch: expected {expected_sha256}, file has {actual}"
        forecaster = load_forecaster(path)
    except Exception as exc:
        return f"cannot load {path}: {type(exc).__name__}: {exc}"
    try:
        if one_step is not None:
            point = float(one_step(forecaster))
        else:
            with quiet_sktime():
                point = float(forecaster.predict(fh=[1]).iloc[0])
    except Exception as exc:
        return f"loaded {path} but predict failed: {type(exc).__name__}: {exc}"
    if not math.isfinite(point):
        return f"loaded {path} but its one-step forecast is not finite ({point})"
    return None
