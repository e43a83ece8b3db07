#!/usr/bin/env bash
# moto's SQS server, the real SQS wire protocol for the queue tests (no Docker, no AWS account).
#   scripts/moto.sh install      create .venv at the repo root and install moto (idempotent)
#   scripts/moto.sh start PORT   start the server in the background, print its URL once it answers
#   scripts/moto.sh stop         stop the server started by `start`
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: 5.2.5 is the version measured against aws-sdk-sqs 1.x (FIFO, dedup while queued, visibility,
# redrive to a FIFO DLQ). Its known gaps: no dedup after delete, no StartMessageMoveTask.
MOTO_VERSION=5.2.5
VENV=.venv
PIDFILE=$VENV/moto.pid
LOGFILE=$VENV/moto.log

install() {
  if [ -x "$VENV/bin/moto_server" ] &&
    "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
    return 0
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

start() {
  local port=${1:?usage: scripts/moto.sh start PORT}
  [ -x "$VENV/bin/moto_server" ] || {
    echo "moto is not installed: run scripts/moto.sh install" >&2
    exit 1
  }
  stop
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOGFILE" 2>&1 &
  echo $! >"$PIDFILE"
  local url="http://127.0.0.1:$port"
  # It answers after about half a second; allow 30 s on a busy CI machine.
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url/moto-api/" 2>/dev/null; then
      echo "$url"
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "moto_server exited:" >&2
      cat "$LOGFILE" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    sleep 0.1
  done
  echo "moto_server did not answer on $url within 30 s" >&2
  stop
  exit 1
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid=$(cat "$PIDFILE")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$PIDFILE"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop ;;
  *)
    echo "usage: scripts/moto.sh install | start PORT | stop" >&2
    exit 2
    ;;
esac
