# drd image: the daemon/CLI plus pgBackRest and PostgreSQL 15 (server and client): the
# same image runs the drill agent, which restores into a scratch server in its pod.
# Installs exactly the locked runtime dependencies (requirements-runtime.lock) and drd
# itself from a wheel built here, and runs as a non-root user that owns its state
# directory (uid 10001, the uid drill Jobs run as: drd.drill.kubernetes.RUN_AS_USER).

# -- build: a virtualenv with the locked dependencies, then drd's wheel into it. The
# dependency layer is cached until the lock changes.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY requirements-runtime.lock ./
RUN python -m venv /opt/drd \
 && /opt/drd/bin/pip install --no-cache-dir -r requirements-runtime.lock
COPY pyproject.toml README.md ./
COPY drd ./drd
RUN /opt/drd/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/drd/bin/pip install --no-cache-dir --no-deps /wheels/drd-*.whl

# -- runtime: Debian slim with PostgreSQL 15 and pgBackRest, the virtualenv copied over.
FROM python:3.11-slim-bookworm
# Versions come from Debian bookworm (pgBackRest 2.45, PostgreSQL 15); pinning exact
# Debian revisions would break on every security update. No default cluster is created:
# drills initialise nothing, they restore.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/drd.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends pgbackrest postgresql-15 postgresql-client-15 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 drd \
 && useradd --system --uid 10001 --gid drd --home-dir /var/lib/drd --create-home drd
COPY --from=build /opt/drd /opt/drd
COPY tiers /etc/drd/tiers
ENV PATH=/opt/drd/bin:$PATH \
    DRD_CONFIG=/etc/drd/drd.yaml \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/drd
EXPOSE 9187
# The daemon's /healthz (daemon.listen_host/listen_port default to 127.0.0.1:9187; set
# DRD_HEALTHCHECK_URL when the config moves it). No curl in the image: Python's urllib.
# Kubernetes ignores HEALTHCHECK: helm/drd probes /healthz and /readyz itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('DRD_HEALTHCHECK_URL', 'http://127.0.0.1:9187/healthz'); sys.exit(0 if urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["drd"]
CMD ["daemon"]
