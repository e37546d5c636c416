"""The instrument catalogue: every instrument metalcast knows, with the providers that serve it.

Two homes, one shape (:class:`Instrument`): the file ``infra/instruments.toml`` (reviewed, in
git) and the table ``ref.instruments`` (what the services read at run time).
``metalcast instruments sync`` upserts the file into the table; ``metalcast instruments add``
changes one row. Reading the table again is all a service needs to see a change.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from metalcast_core._symbols import METAL_SYMBOLS

Kind = Literal["metal", "crypto", "equity", "etf", "fx", "macro"]
Cadence = Literal["hourly", "daily"]
KINDS: tuple[str, ...] = ("metal", "crypto", "equity", "etf", "fx", "macro")
CADENCES: tuple[str, ...] = ("hourly", "daily")
CATALOGUE_FILE = "instruments.toml"


class ModelConfig(BaseModel):
    """How the trainer models an instrument: ``x_size`` entries of its cadence (hours or
    days) and the candidates backtested each run (family names, or ``{"family", "name",
    "hyperparameters"}`` objects as in ``METALCAST_TRAINER__CANDIDATES``); ``horizon``: how
    far its forecasts reach, in steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x_size: Annotated[int, Field(ge=3, le=10_000)] = 12
    candidates: tuple[str | dict[str, Any], ...] = ("naive", "drift", "theta", "ses")
    # The furthest a forecast reaches, in steps of the cadence (hours or days); default: the
    # API's max_horizon_h for hourly instruments, max_horizon_days for daily ones.
    horizon: Annotated[int | None, Field(ge=1, le=100_000)] = None


class Instrument(BaseModel):
    """One catalogued instrument."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9._-]{0,19}$")]
    name: str = ""
    kind: Kind
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    unit: str = ""
    cadence: Cadence = "hourly"
    providers: dict[str, str] = Field(default_factory=dict)  # provider -> its own id
    model: ModelConfig | None = None

    @field_validator("providers")
    @classmethod
    def _ids_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        for provider, code in value.items():
            if not provider.strip() or not str(code).strip():
                raise ValueError(f"provider {provider!r} has an empty id")
        return value

    def provider_id(self, provider: str) -> str | None:
        return self.providers.get(provider)


class CatalogueError(ValueError):
    """The catalogue file or a row is not valid: the message names the entry and the field."""


class Catalogue:
    """Instruments by symbol. A ``Collection`` of symbols, so it can stand wherever the known
    symbols are asked for; :meth:`replace` swaps the contents in place (a refresh)."""

    def __init__(self, instruments: Iterable[Instrument] = (), extra: Iterable[str] = ()) -> None:
        """``extra``: symbols known besides the catalogued ones (``METALCAST_KNOWN_SYMBOLS``)."""
        self._extra = frozenset(extra)
        self._by_symbol: dict[str, Instrument] = {}
        self.replace(instruments)

    def replace(self, instruments: Iterable[Instrument]) -> None:
        by_symbol = {i.symbol: i for i in instruments}
        self._by_symbol, self._symbols = by_symbol, frozenset(by_symbol) | self._extra

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._symbols

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._symbols))

    def __len__(self) -> int:
        return len(self._symbols)

    def get(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    @property
    def instruments(self) -> list[Instrument]:
        return [self._by_symbol[s] for s in sorted(self._by_symbol)]

    def served_by(self, provider: str) -> dict[str, str]:
        """symbol -> the provider's id, for the instruments ``provider`` serves."""
        return {
            i.symbol: i.providers[provider] for i in self.instruments if provider in i.providers
        }

    def with_cadence(self, cadence: str) -> list[Instrument]:
        return [i for i in self.instruments if i.cadence == cadence]

    def modelled(self) -> list[Instrument]:
        """Instruments with a model configuration, metals excepted (the metals keep their
        own trainer settings and the data scientists' window)."""
        return [i for i in self.instruments if i.model is not None and i.kind != "metal"]


def default_catalogue_path() -> Path:
    """``infra/instruments.toml`` of the working directory, else of the repository this
    library was installed from (editable install)."""
    here = Path.cwd() / "infra" / CATALOGUE_FILE
    if here.is_file():
        return here
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "infra" / CATALOGUE_FILE
        if candidate.is_file():
            return candidate
    return here


def parse_catalogue(text: str, origin: str = "catalogue") -> list[Instrument]:
    """The ``[[instrument]]`` entries of a TOML text; :class:`CatalogueError` naming the entry
    and field of the first problem, or a symbol listed twice."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{origin}: not valid TOML: {exc}") from exc
    entries = data.get("instrument", [])
    if not isinstance(entries, list):
        raise CatalogueError(f"{origin}: `instrument` must be an array of tables")
    out: list[Instrument] = []
    seen: set[str] = set()
    for n, entry in enumerate(entries, start=1):
        try:
            inst = Instrument.model_validate(entry)
        except ValidationError as exc:
            label = entry.get("symbol", f"#{n}") if isinstance(entry, dict) else f"#{n}"
            raise CatalogueError(f"{origin}: instrument {label}: {_first(exc)}") from exc
        if inst.symbol in seen:
            raise CatalogueError(f"{origin}: instrument {inst.symbol} is listed twice")
        seen.add(inst.symbol)
        out.append(inst)
    return out


def load_catalogue_file(path: Path | None = None) -> list[Instrument]:
    path = path or default_catalogue_path()
    return parse_catalogue(path.read_text(), str(path))


def _first(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(x) for x in err["loc"]) or "<entry>"
    return f"{loc}: {err['msg']}"


# --- the table ------------------------------------------------------------------------------

_SELECT = """
SELECT symbol, name, kind, currency, unit, cadence, providers, model
FROM ref.instruments ORDER BY symbol
"""

_UPSERT = """
INSERT INTO ref.instruments (symbol, name, kind, currency, unit, cadence, providers, model)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb)
ON CONFLICT (symbol) DO UPDATE SET
    name = EXCLUDED.name, kind = EXCLUDED.kind, currency = EXCLUDED.currency,
    unit = EXCLUDED.unit, cadence = EXCLUDED.cadence, providers = EXCLUDED.providers,
    model = EXCLUDED.model, updated_at = now()
WHERE (ref.instruments.name, ref.instruments.kind, ref.instruments.currency,
       ref.instruments.unit, ref.instruments.cadence, ref.instruments.providers,
       ref.instruments.model)
   IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.kind, EXCLUDED.currency, EXCLUDED.unit, EXCLUDED.cadence,
       EXCLUDED.providers, EXCLUDED.model)
"""


def instrument_from_row(row: Mapping[str, Any]) -> Instrument:
    def decoded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return Instrument(
        symbol=row["symbol"],
        name=row["name"],
        kind=row["kind"],
        currency=row["currency"],
        unit=row["unit"],
        cadence=row["cadence"],
        providers=decoded(row["providers"]) or {},
        model=decoded(row["model"]),
    )


async def fetch_catalogue(conn: Any) -> list[Instrument]:
    """Every row of ``ref.instruments`` (``conn``: an asyncpg connection or pool)."""
    return [instrument_from_row(r) for r in await conn.fetch(_SELECT)]


async def upsert_instruments(conn: Any, instruments: Sequence[Instrument]) -> int:
    """Insert or update ``instruments``; returns how many rows changed."""
    changed = 0
    for inst in instruments:
        status = await conn.execute(
            _UPSERT,
            inst.symbol,
            inst.name,
            inst.kind,
            inst.currency,
            inst.unit,
            inst.cadence,
            json.dumps(inst.providers, sort_keys=True),
            None if inst.model is None else inst.model.model_dump_json(),
        )
        changed += int(str(status).rsplit(" ", 1)[-1])
    return changed


async def remove_instrument(conn: Any, symbol: str) -> bool:
    status = await conn.execute("DELETE FROM ref.instruments WHERE symbol = $1", symbol)
    return str(status).endswith(" 1")


def catalogue_symbols(instruments: Iterable[Instrument], extra: Iterable[str] = ()) -> list[str]:
    """The symbols of ``instruments`` and ``extra``, the metals always among them."""
    return sorted({*METAL_SYMBOLS, *extra, *(i.symbol for i in instruments)})


__all__ = [
    "CADENCES",
    "KINDS",
    "Cadence",
    "Catalogue",
    "CatalogueError",
    "Instrument",
    "Kind",
    "ModelConfig",
    "catalogue_symbols",
    "default_catalogue_path",
    "fetch_catalogue",
    "instrument_from_row",
    "load_catalogue_file",
    "parse_catalogue",
    "remove_instrument",
    "upsert_instruments",
]
