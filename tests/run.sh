#!/usr/bin/env bash
# Install what the tests need and run them: `bash tests/run.sh [pytest args]`.
# System packages (mosquitto, chromium, chromium-driver, postgresql) are installed with apt when missing and
# this runs as root; otherwise the script says what to install. Python packages go into ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing+=(mosquitto)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v pg_ctlcluster >/dev/null || command -v pg_isready >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "please install: sudo apt-get install ${missing[*]}" >&2
  fi
fi

# PostgreSQL: start the local cluster when it is installed but down, with trust for 127.0.0.1 test logins.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -h 127.0.0.1 -q 2>/dev/null && [ "$(id -u)" = 0 ]; then
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
fi
if pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='test'" 2>/dev/null | grep -q 1 \
    || createdb -h 127.0.0.1 -U postgres test 2>/dev/null || true
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# OctoPrint for tests/printers/test_octoprint.py lives in its own venv (its pins clash with ours); about 30-60 s
# once. One retry; when both fail the OctoPrint tests say so (they fail under CI=true).
octo=${FABPANEL_OCTOPRINT_VENV:-.venv-octoprint}
if [ ! -x "$octo/bin/octoprint" ]; then
  echo "installing OctoPrint into $octo"
  octo_log=$(mktemp)
  for attempt in 1 2; do
    rm -rf "$octo"
    if python3 -m venv "$octo" >"$octo_log" 2>&1 \
        && "$octo/bin/pip" install -q --disable-pip-version-check octoprint >>"$octo_log" 2>&1; then
      break
    fi
    echo "OctoPrint install attempt $attempt failed:" >&2
    grep -v '^WARNING: Location' "$octo_log" | tail -5 >&2
    rm -rf "$octo"
  done
  rm -f "$octo_log"
fi

# The real Moonraker (tests/printers/test_moonraker.py) also has its own venv; about 50 s once.
moon=${FABPANEL_MOONRAKER_VENV:-.venv-moonraker}
if [ ! -x "$moon/bin/moonraker" ]; then
  echo "installing Moonraker into $moon"
  { python3 -m venv "$moon" && "$moon/bin/pip" install -q --disable-pip-version-check moonraker; } >/dev/null 2>&1 \
    || { echo "Moonraker install failed; its tests will say so" >&2; rm -rf "$moon"; }
fi
exec .venv/bin/python -m pytest "$@"
