"""The bulk pipeline's three stages written with pandas, for ``bench_bulk.py``'s baseline:
the same work as ``metalcast_bulk`` (the same validation rules and reasons, the same
features with pandas' own ``rolling('30D')``, the same LightGBM fit and time split), the way
a pandas user would write it, one batch of 400 files at a time so that it fits in memory.
Not shipped: a yardstick."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HEADER = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
PRICES = ["Open", "High", "Low", "Close", "Adj Close"]
BATCH = 400


def _read(path: Path) -> pd.DataFrame | None:
    data = path.read_bytes().strip()
    if not data or data.startswith(b"<"):
        return None
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError):
        return None
    if list(frame.columns) != HEADER or frame.empty:
        return None
    frame["Symbol"] = path.stem
    frame["ETF"] = path.parent.name == "etfs"
    return frame


def _validate(raw: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    date = pd.to_datetime(raw["Date"], format="%Y-%m-%d", errors="coerce")
    nums = {c: pd.to_numeric(raw[c], errors="coerce") for c in [*PRICES, "Volume"]}
    bad = date.isna()
    for c in [*PRICES, "Volume"]:
        bad |= nums[c].isna()
    for c in PRICES:
        bad |= ~np.isfinite(nums[c]) | (nums[c].abs() > 1e7) | (nums[c] <= 0)
    bad |= nums["High"] < nums["Low"]
    bad |= (nums["Volume"] < 0) | (nums["Volume"] != np.floor(nums["Volume"]))
    good = pd.DataFrame({"Symbol": raw["Symbol"], "ETF": raw["ETF"], "Date": date, **nums})[~bad]
    dup = good.duplicated(["Symbol", "Date"], keep="first")
    good = good[~dup].copy()
    good["Date"] = good["Date"].dt.strftime("%Y-%m-%d")
    good["Volume"] = good["Volume"].astype("int64")
    return good, int(bad.sum() + dup.sum())


def ingest(source: Path, out: Path) -> dict[str, Any]:
    files = sorted(source.glob("stocks/*.csv")) + sorted(source.glob("etfs/*.csv"))
    (out / "prices").mkdir(parents=True, exist_ok=True)
    rows = quarantined = 0
    for i in range(0, len(files), BATCH):
        frames = [f for f in (_read(p) for p in files[i : i + BATCH]) if f is not None]
        good, bad = _validate(pd.concat(frames, ignore_index=True))
        good.to_parquet(out / "prices" / f"part-{i // BATCH:05d}.parquet", index=False)
        rows += len(good)
        quarantined += bad
    return {"rows": rows, "quarantined": quarantined}


def features(_: Path, out: Path) -> dict[str, Any]:
    (out / "features").mkdir(parents=True, exist_ok=True)
    rows = 0
    for part in sorted((out / "prices").glob("*.parquet")):
        frame = pd.read_parquet(part, columns=["Symbol", "ETF", "Date", "Volume", "Adj Close"])
        frame["d"] = pd.to_datetime(frame["Date"])
        frame = frame.sort_values(["Symbol", "d"])
        rolling = frame.groupby("Symbol").rolling("30D", on="d", min_periods=1)
        frame["vol_moving_avg"] = rolling["Volume"].mean().to_numpy()
        frame["adj_close_rolling_med"] = rolling["Adj Close"].median().to_numpy()
        frame.drop(columns="d").to_parquet(out / "features" / part.name, index=False)
        rows += len(frame)
    return {"rows": rows}


def train(_: Path, out: Path) -> dict[str, Any]:
    import lightgbm as lgb

    from metalcast_bulk.train import TrainConfig

    cfg = TrainConfig()
    frame = pd.read_parquet(
        out / "features", columns=["Date", "Volume", "vol_moving_avg", "adj_close_rolling_med"]
    ).dropna()
    per_date = frame.groupby("Date").size().sort_index().cumsum()
    first_test = per_date.index[int((per_date < len(frame) * (1 - cfg.test_fraction)).sum())]
    past, recent = frame[frame["Date"] < first_test], frame[frame["Date"] >= first_test]
    past = past[past["vol_moving_avg"] > 0]
    if len(past) > cfg.max_train_rows:
        past = past.sample(cfg.max_train_rows, random_state=cfg.seed)
    x = past[["vol_moving_avg", "adj_close_rolling_med"]].to_numpy()
    scale = past["vol_moving_avg"].to_numpy()
    booster = lgb.train(
        cfg.lightgbm_params(),
        lgb.Dataset(x, past["Volume"].to_numpy() / scale, weight=scale),
        num_boost_round=cfg.num_boost_round,
    )
    xt = recent[["vol_moving_avg", "adj_close_rolling_med"]].to_numpy()
    predicted = np.maximum(np.rint(xt[:, 0] * booster.predict(xt)), 0)
    y = recent["Volume"].to_numpy()
    return {
        "n_train": len(past),
        "n_test": len(recent),
        "mae": float(np.mean(np.abs(predicted - y))),
        "baseline_mae": float(np.mean(np.abs(recent["vol_moving_avg"].to_numpy() - y))),
    }


STAGES: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "ingest": ingest,
    "features": features,
    "train": train,
}
