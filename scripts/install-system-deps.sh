#!/bin/sh
# Installs the Debian/Ubuntu packages drd's tests and demo need, only when missing
# (so a second run costs a few milliseconds). Needs root or sudo the first time.
set -eu

PG_BIN=/usr/lib/postgresql/15/bin
missing=""
command -v pgbackrest >/dev/null 2>&1 || missing="$missing pgbackrest"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
[ -x "$PG_BIN/initdb" ] || missing="$missing postgresql-15"
command -v psql >/dev/null 2>&1 || missing="$missing postgresql-client-15"
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
# headless Chromium screenshots the daemon's status page in the tests
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-system-deps: need root or sudo to install:$missing" >&2
    exit 1
fi

echo "install-system-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts a default cluster and nginx site on install; drd's tests start their own
# on free ports, so stop the packaged services if they were started (ignore failures:
# there is no init system in containers).
$SUDO service nginx stop >/dev/null 2>&1 || true
