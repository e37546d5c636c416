"""GET /v1/valuation/gold: the gold valuation model (docs/valuation.md)."""
