# townsquare: gunicorn + uvicorn workers, dependencies pinned by uv.lock, non-root.
# Build: docker build -t townsquare .    Run: see compose.yaml and docs/operations.md.
# On its own the image runs the embedded default: SQLite in /data and the in-memory
# broker, so one worker (more would each be an island; the service refuses to start
# with WEB_CONCURRENCY > 1 and no REDIS_URL). Set DATABASE_URL, REDIS_URL and
# WEB_CONCURRENCY to scale, as compose.yaml does.

# --- build: resolve nothing, install exactly what uv.lock pins -----------------------
FROM python:3.12-slim AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --no-editable

# --- runtime: the virtualenv and the gunicorn config, nothing else --------------------
FROM python:3.12-slim AS runtime
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home townsquare \
    && mkdir -p /data \
    && chown townsquare:townsquare /data
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY gunicorn.conf.py ./
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATABASE_URL=sqlite+aiosqlite:////data/townsquare.db \
    WEB_CONCURRENCY=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/townsquare-metrics
USER townsquare
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/live', timeout=3)"]
# gunicorn turns SIGTERM into a graceful stop (GRACEFUL_TIMEOUT, 30 s by default).
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
