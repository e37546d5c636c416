"""/v1/instruments: the instrument catalogue and each instrument's price history."""
