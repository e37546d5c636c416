"""``GET /predict`` answers a bare JSON integer, exactly as the original API did;
``GET /v1/volume/predict`` answers the integer with the model version and the inputs.
Missing, negative, NaN, infinite, absurdly large or non-numeric inputs are a 422 naming the
reason; 409 while no volume model is in production (as forecasts answer for a metal without
one); 503 when its file cannot be loaded."""

from __future__ import annotations

from fastapi import APIRouter

from metalcast_api.deps import VolumeDep
from metalcast_api.errors import conflict, responses, unavailable
from metalcast_api.resources.volume import (
    LoadedVolume,
    NoVolumeModel,
    VolumeModels,
    VolumeUnavailable,
)
from metalcast_api.volume import service
from metalcast_api.volume.schemas import (
    AdjCloseRollingMed,
    VolMovingAvg,
    VolumeInputs,
    VolumePredictionRead,
)

router = APIRouter(tags=["volume"])


async def _loaded(models: VolumeModels) -> LoadedVolume:
    try:
        return await models.current()
    except NoVolumeModel as exc:
        conflict(str(exc))
    except VolumeUnavailable as exc:
        unavailable(str(exc))


@router.get(
    "/predict",
    response_model=int,
    responses=responses(409, 503),
    summary="Predicted trading volume, a bare integer (the original API)",
)
async def predict_bare(
    models: VolumeDep, vol_moving_avg: VolMovingAvg, adj_close_rolling_med: AdjCloseRollingMed
) -> int:
    """The day's predicted volume from its two rolling features, e.g. `10350`."""
    loaded = await _loaded(models)
    return service.predict(loaded, vol_moving_avg, adj_close_rolling_med)


@router.get(
    "/v1/volume/predict",
    response_model=VolumePredictionRead,
    responses=responses(409, 503),
    summary="Predicted trading volume with the model version and the inputs",
)
async def predict(
    models: VolumeDep, vol_moving_avg: VolMovingAvg, adj_close_rolling_med: AdjCloseRollingMed
) -> VolumePredictionRead:
    loaded = await _loaded(models)
    return VolumePredictionRead(
        volume=service.predict(loaded, vol_moving_avg, adj_close_rolling_med),
        model_version=loaded.info.version,
        model_version_id=loaded.info.id,
        inputs=VolumeInputs(
            vol_moving_avg=vol_moving_avg, adj_close_rolling_med=adj_close_rolling_med
        ),
    )
