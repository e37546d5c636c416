"""The instruments metalcast knows, and how metals map to analytics columns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Metal:
    symbol: str  # ISO 4217-style code, e.g. "XAU"
    name: str
    column: str  # column in analytics.metal_prices

    @property
    def ticker(self) -> str:
        """The data scientists' ticker name, e.g. ``XAUUSD``."""
        return f"{self.symbol}USD"


METALS: tuple[Metal, ...] = (
    Metal("XAU", "Gold", "xau"),
    Metal("XAG", "Silver", "xag"),
    Metal("XPT", "Platinum", "xpt"),
    Metal("XPD", "Palladium", "xpd"),
)
METAL_SYMBOLS: tuple[str, ...] = tuple(m.symbol for m in METALS)
METALS_BY_SYMBOL: dict[str, Metal] = {m.symbol: m for m in METALS}
METALS_BY_TICKER: dict[str, Metal] = {m.ticker: m for m in METALS}

# Crypto and other symbols fit the tick table without schema changes; they simply have
# no column in analytics.metal_prices.
DEFAULT_KNOWN_SYMBOLS: tuple[str, ...] = (*METAL_SYMBOLS, "BTC", "ETH")


def metal_for(symbol_or_ticker: str) -> Metal:
    """Resolve ``XAU`` or ``XAUUSD`` to its :class:`Metal`; ``KeyError`` if unknown."""
    key = symbol_or_ticker.upper()
    if key in METALS_BY_SYMBOL:
        return METALS_BY_SYMBOL[key]
    return METALS_BY_TICKER[key]
