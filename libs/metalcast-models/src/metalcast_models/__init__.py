"""metalcast models: one forecaster per metal, trained on the last hours of prices.

Importing this package does not import sktime (seconds); fitting, saving and loading do.
"""

from metalcast_models.artifacts import (
    SavedArtifact,
    artifact_path,
    check_artifact,
    load_forecaster,
    save_forecaster,
    sha256_of,
)
from metalcast_models.data import (
    FrameTrainingData,
    GeneratedData,
    PostgresTrainingData,
    TrainingData,
    generate_prices,
)
from metalcast_models.families import FAMILIES, Family, get_family, register_family
from metalcast_models.fitting import FitResult, fit_frame, normalise_frame, window_problem
from metalcast_models.forecast import predict_with_intervals
from metalcast_models.metrics import insample_metrics
from metalcast_models.model import Model
from metalcast_models.parallel import (
    FitPool,
    blas_process_pool,
    fit_many,
    single_threaded_blas,
)

__all__ = [
    "FAMILIES",
    "Family",
    "FitPool",
    "FitResult",
    "FrameTrainingData",
    "GeneratedData",
    "Model",
    "PostgresTrainingData",
    "SavedArtifact",
    "TrainingData",
    "artifact_path",
    "blas_process_pool",
    "check_artifact",
    "fit_frame",
    "fit_many",
    "generate_prices",
    "get_family",
    "insample_metrics",
    "load_forecaster",
    "normalise_frame",
    "predict_with_intervals",
    "register_family",
    "save_forecaster",
    "sha256_of",
    "single_threaded_blas",
    "window_problem",
]
