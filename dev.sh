#!/usr/bin/env bash
# Set up everything safecity needs, then serve the demo or run the tests.
#   bash dev.sh demo   # environment + demo data + panel serve (http://localhost:5006)
#   bash dev.sh test   # environment + the whole test suite
# Extra arguments go to panel serve (demo) or pytest (test).
set -euo pipefail
cd "$(dirname "$0")"
what="${1:-}"; shift || true
case "$what" in demo|test|setup) ;; *) echo "usage: bash dev.sh demo|test|setup [args]" >&2; exit 2;; esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {  # only what is missing, and only where apt exists
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} = 0 ] && return 0
  command -v apt-get >/dev/null || { echo "please install: ${missing[*]}" >&2; return 1; }
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; "$PY" -m venv .venv; }
fi
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv
.venv/bin/uv pip install -q --python .venv/bin/python -e ".[dev]"
export PATH="$PWD/.venv/bin:$PATH"

case "$what" in
  setup) ;;
  demo)
    # a demo city from before cameras had a ground calibration (cameras.yml) is set aside
    if [ -d demo-data/history ] && [ ! -f demo-data/cameras.yml ]; then
      echo "demo-data has no cameras.yml: moving it to demo-data.old and simulating again" >&2
      rm -rf demo-data.old && mv demo-data demo-data.old
    fi
    [ -d demo-data/history ] || safecity simulate --out demo-data
    # the warm-up reads the city, fits its models and compiles datashader before the server
    # says it is ready (safecity/app/warmup.py; SAFECITY_WARMUP=0 leaves it to the first session)
    export SAFECITY_DATA_DIR="${SAFECITY_DATA_DIR:-$PWD/demo-data}"
    exec panel serve dashboards/operations.py --setup safecity/app/warmup.py \
      --address 127.0.0.1 --port "${PORT:-5006}" "$@"
    ;;
  test)
    # the browser tests drive Debian's Chromium (never a downloaded browser)
    [ -x /usr/bin/chromium ] || apt_install chromium || echo "chromium not installed: browser tests will fail" >&2
    # the MQTT bridge's tests run a real broker (Debian's Mosquitto)
    [ -x /usr/sbin/mosquitto ] || apt_install mosquitto || echo "mosquitto not installed: MQTT tests will skip" >&2
    # the state store's tests run a real PostgreSQL server (Debian's), started by the tests
    compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null \
      || apt_install postgresql || echo "postgresql not installed: its tests will skip" >&2
    exec python -m pytest "$@"
    ;;
esac
