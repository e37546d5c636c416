"""metalcast trainer: retrains one model per metal on every ``pipeline.batch-loaded.v1``."""
