"""The API's layout (STYLE 18): long-lived resources in ``metalcast_api.resources``, owned by
the lifespan; feature folders hold views, schemas and queries; no import runs back up from
the resources into a feature folder."""

from __future__ import annotations

import ast
from pathlib import Path

import metalcast_api

PACKAGE = Path(metalcast_api.__file__).parent
FEATURES = (
    "prices",
    "models",
    "forecasts",
    "stream",
    "ops",
    "dashboard",
    "instruments",
    "analytics",
    "volume",
    "bulk",
)
FEATURE_MODULES = {"__init__.py", "views.py", "schemas.py", "service.py"}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def test_feature_folders_hold_only_views_schemas_and_queries() -> None:
    for feature in FEATURES:
        modules = {p.name for p in (PACKAGE / feature).glob("*.py")}
        assert modules <= FEATURE_MODULES, f"{feature}/: {sorted(modules - FEATURE_MODULES)}"


def test_resources_import_no_feature_folder_nor_the_app() -> None:
    files = sorted((PACKAGE / "resources").glob("*.py"))
    assert {p.stem for p in files} >= {"__init__", "forecasts", "hub", "latest", "events", "volume"}
    upward = tuple(f"metalcast_api.{name}" for name in (*FEATURES, "app", "deps"))
    for path in files:
        bad = sorted(m for m in _imports(path) if m.startswith(upward))
        assert not bad, f"resources/{path.name} imports {bad}"


def test_the_lifespan_builds_the_resources() -> None:
    app = _imports(PACKAGE / "app.py")
    assert "metalcast_api.resources.open_resources" in app
    from metalcast_api.forecasts.schemas import ForecastStep as Exported
    from metalcast_api.resources.forecasts import ForecastStep

    assert Exported is ForecastStep  # one step type: the cache's, answered as it is
