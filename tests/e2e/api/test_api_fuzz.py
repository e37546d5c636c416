"""Property-based fuzzing of the OpenAPI schema (schemathesis) against the running API:
no input may make it answer 5xx, and every answer must match what the schema declares.

Each operation gets ``MAX_EXAMPLES`` generated cases, valid and invalid ones (schemathesis'
strategies driven by hypothesis directly: its pytest plugin's fixture loader does not work
with this pytest).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, checks
from schemathesis.core.result import Ok

from tests.e2e.api.conftest import World

pytestmark = pytest.mark.e2e
MAX_EXAMPLES = 30
# The stream never ends by itself: it has a test of its own (test_api.py).
SKIPPED = {"/v1/stream/ticks"}
# Every check but one: schema-valid input may still be refused with 422 for reasons a
# schema cannot state (`from` after `to`, `until` in the past, a horizon beyond the
# configured maximum, a date outside 1970..2200); each such 422 carries its reason.
EXCLUDED_CHECKS = [checks.positive_data_acceptance]


# schemathesis' own strategies draw from `random` (its business, not ours).
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
def test_no_input_makes_the_api_fail(world: World) -> None:
    schema = schemathesis.openapi.from_url(f"{world.url}/openapi.json")
    failures: list[str] = []
    calls: dict[str, int] = {}
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the schema has a broken operation: {result.err()}"
        operation = result.ok()
        if operation.path in SKIPPED:
            continue
        operations += 1
        label = f"{operation.method.upper()} {operation.path}"

        seen: list[str] = []
        run = _fuzzer(operation, label, calls, seen)
        try:
            run()
        except Exception as exc:
            failures.append(f"{label}: {_short(exc)}")
    assert operations >= 18
    assert not failures, "\n\n".join(failures)
    assert all(n >= 1 for n in calls.values())


def _fuzzer(
    operation: Any, label: str, calls: dict[str, int], seen: list[str]
) -> Callable[[], None]:
    # Valid inputs and invalid ones (wrong types, out-of-range values, missing fields).
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def run(case: Case[Any]) -> None:
        calls[label] = calls.get(label, 0) + 1
        try:
            case.call_and_validate(timeout=30, excluded_checks=EXCLUDED_CHECKS)
        except BaseException as exc:
            seen.append(f"{label}: {_short(exc)}")
            raise

    result: Callable[[], None] = run
    return result


def _short(exc: Any) -> str:
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        text += f"\n  caused by {type(cause).__name__}: {cause}"
    for sub in getattr(exc, "exceptions", ()):
        text += "\n  " + _short(sub)
    return text if len(text) < 3000 else text[:3000] + " …"
