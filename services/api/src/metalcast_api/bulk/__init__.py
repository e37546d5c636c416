"""The bulk pipeline's validation reports (``bulk.ingest_runs``): ``/v1/bulk/ingest-runs``."""
