"""The environment variables a stack's clients read: one builder for every kind of stack."""

from __future__ import annotations

from metalcast.stack import offsite as offsite_keys
from metalcast.stack.minio import ACCESS_KEY, BACKUPS_BUCKET, MODELS_BUCKET, REGION, SECRET_KEY
from metalcast.stack.postgres import DATABASE, USER


def stack_env(
    *,
    pg_host: str,
    pg_port: int,
    kafka_bootstrap: str,
    s3_endpoint: str,
    offsite_endpoint: str | None = None,
) -> dict[str, str]:
    """``METALCAST_*`` names exactly as ``ServiceSettings`` reads them (with
    ``offsite_endpoint``, the backup service's off-box target too), then ``AWS_*`` for the
    AWS CLI/SDKs and ``PG*`` for ``psql``/``pg_dump``."""
    offsite = {}
    if offsite_endpoint is not None:
        offsite = {
            "METALCAST_BACKUP__OFFSITE__ENDPOINT_URL": offsite_endpoint,
            "METALCAST_BACKUP__OFFSITE__ACCESS_KEY_ID": offsite_keys.ACCESS_KEY,
            "METALCAST_BACKUP__OFFSITE__SECRET_ACCESS_KEY": offsite_keys.SECRET_KEY,
            "METALCAST_BACKUP__OFFSITE__REGION": REGION,
            "METALCAST_BACKUP__OFFSITE__BUCKET": offsite_keys.BUCKET,
        }
    return {
        "METALCAST_POSTGRES__URL": f"postgresql://{USER}@{pg_host}:{pg_port}/{DATABASE}",
        "METALCAST_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "METALCAST_S3__ENDPOINT_URL": s3_endpoint,
        "METALCAST_S3__ACCESS_KEY_ID": ACCESS_KEY,
        "METALCAST_S3__SECRET_ACCESS_KEY": SECRET_KEY,
        "METALCAST_S3__REGION": REGION,
        "METALCAST_S3__MODELS_BUCKET": MODELS_BUCKET,
        "METALCAST_S3__BACKUPS_BUCKET": BACKUPS_BUCKET,
        **offsite,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "PGHOST": pg_host,
        "PGPORT": str(pg_port),
        "PGUSER": USER,
        "PGDATABASE": DATABASE,
    }
