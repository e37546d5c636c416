"""metalcast bulk market data: daily stock and ETF CSVs -> Parquet -> features -> a volume model."""
