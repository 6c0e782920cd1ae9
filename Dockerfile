# drd image: the daemon/CLI plus pgBackRest and PostgreSQL 15 (server and client): the
# same image runs the drill agent, which restores into a scratch server in its pod.
# Installs exactly the locked runtime dependencies (requirements-runtime.lock) and runs
# as a non-root user that owns its state directory.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY requirements-runtime.lock pyproject.toml README.md ./
COPY drd ./drd
RUN python -m venv /opt/drd \
 && /opt/drd/bin/pip install --no-cache-dir -r requirements-runtime.lock \
 && /opt/drd/bin/pip install --no-cache-dir --no-deps .

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
ENTRYPOINT ["drd"]
CMD ["--help"]
