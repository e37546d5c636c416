"""Generate the event documentation from the event models, so the two cannot drift.

Writes ``docs/events/<topic>.schema.json`` (JSON Schema of each topic's value, from
``model_json_schema(mode="serialization")``) for every topic in ``metalcast_core.ALL_TOPICS``,
and the field table of each topic in ``docs/events.md`` (between its ``<!-- fields:<topic> -->``
and ``<!-- /fields:<topic> -->`` markers). tests/unit/test_event_schemas.py fails when the
committed files differ from what this script produces.

    uv run python tools/gen_event_schemas.py            # rewrite the files
    uv run python tools/gen_event_schemas.py --check    # exit 1 if any file is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from metalcast_core import ALL_TOPICS, Topic, utcnow

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "docs" / "events"
EVENTS_MD = ROOT / "docs" / "events.md"
DIALECT = "https://json-schema.org/draft/2020-12/schema"  # the dialect pydantic emits

_FACTORY_NAMES: dict[Callable[..., Any], str] = {
    utcnow: "now (UTC)",
    uuid.uuid4: "random UUID",
    dict: "`{}`",
    list: "`[]`",
}


def schema_path(topic: Topic[Any]) -> Path:
    return SCHEMA_DIR / f"{topic.name}.schema.json"


def event_schema(topic: Topic[Any]) -> dict[str, Any]:
    """The JSON Schema of the messages on ``topic``, as published (serialization mode)."""
    return {"$schema": DIALECT, **topic.event_type.model_json_schema(mode="serialization")}


def render_schema(topic: Topic[Any]) -> str:
    return json.dumps(event_schema(topic), indent=2, ensure_ascii=False) + "\n"


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"`{prop['$ref'].rsplit('/', 1)[-1]}`"
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_type_of(prop.get('items', {}))}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"object of {_type_of(prop['additionalProperties'])}"
    if "format" in prop:
        return f"{kind} ({prop['format']})"
    return str(kind)


_CONSTRAINTS = (
    ("pattern", "pattern `{}`"),
    ("minLength", "min length {}"),
    ("maxLength", "max length {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {:g}"),
)


def _constraints(prop: dict[str, Any]) -> str:
    found = []
    for option in [prop, *prop.get("anyOf", [])]:
        for key, text in _CONSTRAINTS:
            if key in option:
                found.append(text.format(option[key]))
    return "; ".join(found)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _FACTORY_NAMES.get(field.default_factory, "generated")
    if field.default is PydanticUndefined:
        return "—"
    return f"`{json.dumps(field.default)}`"


def fields_table(topic: Topic[Any]) -> str:
    schema = event_schema(topic)
    required = set(schema.get("required", []))
    fields = topic.event_type.model_fields
    rows = [
        "| field | type | required | default | constraints |",
        "|---|---|---|---|---|",
    ]
    for name, prop in schema["properties"].items():
        cells = [
            f"`{name}`",
            _type_of(prop),
            "yes" if name in required else "no",
            _default(fields[name]) if name in fields else "—",
            _constraints(prop),
        ]
        rows.append("| " + " | ".join(c.replace("\n", " ") for c in cells) + " |")
    return "\n".join(rows)


def _markers(topic: Topic[Any]) -> re.Pattern[str]:
    name = re.escape(topic.name)
    return re.compile(rf"(<!-- fields:{name} -->\n)(.*?)(<!-- /fields:{name} -->)", re.DOTALL)


def _with_table(text: str, topic: Topic[Any]) -> str:
    pattern = _markers(topic)
    if not pattern.search(text):
        raise ValueError(
            f"docs/events.md has no <!-- fields:{topic.name} --> ... "
            f"<!-- /fields:{topic.name} --> section"
        )
    table = fields_table(topic)
    return pattern.sub(lambda m: f"{m.group(1)}{table}\n{m.group(3)}", text, count=1)


def render_events_md(text: str) -> str:
    """``text`` (docs/events.md) with every topic's field table regenerated."""
    for topic in ALL_TOPICS:
        text = _with_table(text, topic)
    return text


def expected_files() -> dict[Path, str]:
    """Every generated file and the content it must have."""
    files = {schema_path(topic): render_schema(topic) for topic in ALL_TOPICS}
    files[EVENTS_MD] = render_events_md(EVENTS_MD.read_text())
    return files


def stale_files() -> list[Path]:
    """Generated files that are missing or differ, and schema files of no registered topic."""
    stale = [p for p, text in expected_files().items() if not p.is_file() or p.read_text() != text]
    known = {schema_path(topic) for topic in ALL_TOPICS}
    stale += sorted(p for p in SCHEMA_DIR.glob("*.schema.json") if p not in known)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        if stale:
            print("run: uv run python tools/gen_event_schemas.py", file=sys.stderr)
        return 1 if stale else 0
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in expected_files().items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    known = {schema_path(topic) for topic in ALL_TOPICS}
    for path in SCHEMA_DIR.glob("*.schema.json"):
        if path not in known:  # the directory is this script's: a topic was removed
            path.unlink()
            print(f"removed {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
