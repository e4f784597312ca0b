# syntax=docker/dockerfile:1.7
# One image for every role (migrate, worker, beat, sandbox, flower); docker-compose.yml picks
# the command. Secrets come from the environment at run time, never from the build.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies first (cached layer), exactly as locked; then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --group flower --no-install-project
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks
COPY sandbox ./sandbox
COPY alembic.ini ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --group flower --no-editable

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 dunning \
    && useradd --system --uid 10001 --gid dunning --home-dir /app --shell /usr/sbin/nologin dunning \
    && mkdir -p /var/lib/dunning \
    && chown dunning:dunning /var/lib/dunning
WORKDIR /app
COPY --from=build --chown=dunning:dunning /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DUNNING_DATA_DIR=/var/lib/dunning \
    DUNNING_POLICY_FILE=/app/config/policies.yaml \
    DUNNING_LOG_FORMAT=json
USER dunning:dunning
VOLUME ["/var/lib/dunning"]
# Celery's warm shutdown: SIGTERM to the main process lets a running send finish.
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "worker", "worker", "--loglevel", "INFO", "--concurrency", "4"]
