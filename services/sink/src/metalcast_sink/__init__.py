"""metalcast sink: ``prices.ticks.v1`` → PostgreSQL, idempotently."""
