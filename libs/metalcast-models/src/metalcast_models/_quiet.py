"""Narrow suppression of third-party warnings we know about and have decided to ignore."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# sktime 1.2 warns on *every* forecaster construction that the default of the
# ``remember_data`` config changes in 1.3. We rely on the current default (True): the
# naive forecaster predicts from the stored data and ``predict_residuals`` reads it.
REMEMBER_DATA_MESSAGE = r"The default of config ``remember_data`` will change"
# sktime's generic predict_residuals calls update_predict with an empty y (the drift naive
# forecaster's in-sample residuals) and says so; nothing is wrong.
EMPTY_UPDATE_MESSAGE = r"empty y passed to update_predict"


def is_known_noise(message: Warning | str) -> bool:
    text = str(message)
    return (isinstance(message, FutureWarning) and "``remember_data``" in text) or (
        isinstance(message, UserWarning) and "empty y passed to update_predict" in text
    )


@contextmanager
def quiet_sktime() -> Iterator[None]:
    """Ignore sktime's ``remember_data`` FutureWarning and its empty ``update_predict``
    notice, and nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=REMEMBER_DATA_MESSAGE, category=FutureWarning)
        warnings.filterwarnings("ignore", message=EMPTY_UPDATE_MESSAGE, category=UserWarning)
        yield
