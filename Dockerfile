# syntax=docker/dockerfile:1
# The image of every metalcast service. SERVICE names its folder under services/ (ingestor,
# sink, trainer, api, backup, watch, ...): the package metalcast-$SERVICE is installed with its
# own dependencies only, and its console script metalcast-$SERVICE is the default command.
# Build from the repository root (compose.yaml does, with build.args.SERVICE):
#   docker build --build-arg SERVICE=sink -t metalcast-sink .
# uv's Docker guide: dependencies from uv.lock in their own layer, then our code, installed
# non-editable into /app/.venv, which alone goes into the runtime image (no uv, no sources).
# tests/integration/test_images.py runs the same two `uv sync` steps for every service compose
# builds and imports every module of the result: a dependency missing from a service's
# pyproject.toml fails there, not in production.

ARG PYTHON_IMAGE=python:3.11-slim

# Only what dependency resolution reads: the lock and every workspace member's pyproject.toml.
# This stage reruns on any change, but the layer below is cached on its result's content.
FROM ${PYTHON_IMAGE} AS manifests
WORKDIR /src
COPY . .
RUN mkdir /manifests \
    && cp uv.lock pyproject.toml /manifests/ \
    && find libs services -mindepth 2 -maxdepth 2 -name pyproject.toml \
        -exec cp --parents {} /manifests/ \;

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# 1. Third-party dependencies of metalcast-$SERVICE only (no dev group, no workspace members):
#    this layer changes only when uv.lock or a pyproject.toml does.
COPY --from=manifests /manifests/ ./
RUN --mount=type=cache,target=/root/.cache/uv \
    test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<folder under services/>" >&2; exit 1; }; \
    test -f "services/${SERVICE}/pyproject.toml" || { echo "no services/${SERVICE}" >&2; exit 1; }; \
    uv sync --frozen --no-dev --no-editable --no-install-workspace --package "metalcast-${SERVICE}"

# 2. Our code: the shared libraries and the service, as ordinary (non-editable) installs
#    (package data such as the dashboard's templates and static files comes with them).
COPY libs libs
COPY services/${SERVICE}/src services/${SERVICE}/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "metalcast-${SERVICE}"


FROM ${PYTHON_IMAGE}
ARG SERVICE
# Debian packages a service needs at run time (the bulk image: a JRE for Spark).
ARG APT_PACKAGES=""
RUN if [ -n "${APT_PACKAGES}" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends ${APT_PACKAGES} \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN groupadd --system --gid 10001 metalcast \
    && useradd --system --uid 10001 --gid metalcast --home-dir /app --no-create-home metalcast \
    && install -d -o metalcast -g metalcast /var/lib/metalcast
# /var/lib/metalcast: the service's own state (the ingestor's request budget and bars
# ledger), a volume in compose; a fresh volume takes this directory's owner.
# Owned by root and read-only for the service user.
COPY --from=build /app/.venv /app/.venv
# `metalcast-migrate` (compose's migrate job) runs from any of these images.
COPY infra/migrations /app/infra/migrations
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    METALCAST_MIGRATIONS_DIR=/app/infra/migrations \
    ENTRY_POINT=metalcast-${SERVICE}
WORKDIR /app
USER metalcast:metalcast
# Not METALCAST_*: the services refuse METALCAST_ variables they do not know.
CMD ["sh", "-c", "exec \"$ENTRY_POINT\""]
