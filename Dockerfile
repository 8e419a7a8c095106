# syntax=docker/dockerfile:1
# The bridge's image: `bridge serve` on port 8080 as an unprivileged user, ready for a read-only root
# filesystem (writable: /data for the SQLite database, /tmp).
#
#   docker build -t chroma-sync-bridge:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -v bridge-data:/data -p 8080:8080 \
#     -e BRIDGE_WEBHOOK_SECRET -e BRIDGE_SYNC_TOKEN -v "$PWD/routes.yaml:/etc/bridge/routes.yaml:ro" \
#     --stop-timeout 30 chroma-sync-bridge:0.1.0
#
# The install steps live in deploy/install-app.sh, which tests/deploy/test_wheel_start.py runs too:
# no Docker engine runs on the development or CI machines, so that test is how CI proves these steps.
# Lint: .ci/deploy-check (hadolint and checkov).

# Both stages use the same base (tests/deploy/test_dockerfile.py checks it): the venv built in
# the first is copied into the second and runs on its interpreter (/usr/local/bin/python3.11).
# To pin the digest as well, append it to both FROM lines:
#   docker buildx imagetools inspect python:3.11.15-slim-bookworm   # prints "Digest: sha256:..."
#   FROM python:3.11.15-slim-bookworm@sha256:... AS builder

# --------------------------------------------------------------------------- builder
FROM python:3.11.15-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# Dependencies first, from the hash-pinned lock alone, so a code change reuses this layer.
COPY deploy/install-app.sh deploy/install-app.sh
COPY deploy/requirements/build.lock deploy/requirements/build.lock
COPY requirements/runtime.lock requirements/runtime.lock
RUN sh deploy/install-app.sh deps /opt/bridge requirements/runtime.lock

# Then the project: its wheel, installed without dependencies (the lock already holds them).
COPY pyproject.toml README.md ./
COPY bridge/ bridge/
RUN sh deploy/install-app.sh wheel /src /dist \
    && sh deploy/install-app.sh app /opt/bridge /dist

# --------------------------------------------------------------------------- runtime
FROM python:3.11.15-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="chroma-sync-bridge" \
      org.opencontainers.image.description="Turns GitHub App push webhooks into Chroma Sync invocations" \
      org.opencontainers.image.licenses="Apache-2.0"

# No installer or build tool in the final image: the base image's pip, setuptools and wheel go
# (the venv below was created without pip). One fixed numeric user, so Kubernetes can verify
# runAsNonRoot, and the two places the bridge reads or writes.
RUN PIP_ROOT_USER_ACTION=ignore python -m pip uninstall --yes --quiet --disable-pip-version-check \
       pip setuptools wheel \
    && groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin bridge \
    && mkdir -p /data /etc/bridge \
    && chown 10001:10001 /data

COPY --from=builder /opt/bridge /opt/bridge

# Bytecode was compiled at install time; the root filesystem is read-only at run time.
ENV PATH=/opt/bridge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRIDGE_DATABASE_URL=sqlite:////data/bridge.db \
    BRIDGE_ROUTES_FILE=/etc/bridge/routes.yaml \
    BRIDGE_LOG_FORMAT=json \
    BRIDGE_LOG_LEVEL=info

WORKDIR /data
USER 10001:10001
EXPOSE 8080

# Liveness without curl: the interpreter is already there. urlopen raises on anything but 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# SIGTERM (Docker's and Kubernetes' default) starts the graceful shutdown, which lasts up to
# BRIDGE_SHUTDOWN_TIMEOUT (20 s): give `docker stop` more than its default 10 s (--stop-timeout 30).
ENTRYPOINT ["bridge"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
