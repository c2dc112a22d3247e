#!/usr/bin/env bash
# A local Prefect server and process worker for catdog, in the background.
#   deployments/local.sh up      start server (127.0.0.1:4200) and worker; logs in .prefect-local/
#   deployments/local.sh deploy  create the work pool and deploy train/nightly and train/on-demand
#   deployments/local.sh down    stop both
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.venv/bin"
STATE="$PWD/.prefect-local"
PORT="${CATDOG_PREFECT_PORT:-4200}"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false
export PATH="$BIN:$PATH"
mkdir -p "$STATE"

start() {  # name, command...
  local name=$1; shift
  if [ -f "$STATE/$name.pid" ] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$STATE/$name.pid"))"; return
  fi
  nohup "$@" >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
  echo "$name started (pid $!), log: $STATE/$name.log"
}

case "${1:-}" in
  up)
    prefect config set PREFECT_API_URL="$PREFECT_API_URL" >/dev/null
    start server prefect server start --host 127.0.0.1 --port "$PORT"
    for _ in $(seq 120); do
      curl -fs "$PREFECT_API_URL/health" >/dev/null 2>&1 && break; sleep 1
    done
    curl -fs "$PREFECT_API_URL/health" >/dev/null || { echo "server did not start, see $STATE/server.log"; exit 1; }
    prefect work-pool create catdog --type process >/dev/null 2>&1 || true
    start worker prefect worker start --pool catdog
    echo "UI: http://127.0.0.1:$PORT   (PREFECT_API_URL=$PREFECT_API_URL is set in your Prefect profile)"
    ;;
  deploy)
    prefect work-pool create catdog --type process >/dev/null 2>&1 || true
    prefect --no-prompt deploy --prefect-file deployments/prefect.yaml --all
    ;;
  down)
    for name in worker server; do
      if [ -f "$STATE/$name.pid" ]; then kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true; rm -f "$STATE/$name.pid"; fi
    done
    echo "stopped"
    ;;
  *) echo "usage: $0 up|deploy|down"; exit 2 ;;
esac
