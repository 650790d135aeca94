#!/bin/bash
# CPU instructions the server spends per request of one workload, counted by callgrind: a
# figure that does not depend on what else the machine is doing, so two builds (or two
# replay-state modes) can be compared on a busy box. It measures the application path
# (routing, auth, replay guard, database, JSON) through the local HTTP listener, not the
# FastCGI front end (bench/run.sh measures that, in time, through nginx).
#
# usage: bench/cost.sh [--workload info] [--seconds 20] [SERVER_BIN...]
#        (default SERVER_BIN: target/release/syncserver-fcgi; build it first)
# prints one line per binary: instructions per request, requests counted
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORKLOAD=info SECONDS_=20
while [ $# -gt 0 ]; do
    case "$1" in
        --workload) WORKLOAD=$2; shift 2 ;;
        --seconds) SECONDS_=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
BINS=("$@")
[ ${#BINS[@]} -eq 0 ] && BINS=("$ROOT/target/release/syncserver-fcgi")
LOAD=$ROOT/target/release/syncload
PORT=${COST_PORT:-18190}

D=$(mktemp -d /tmp/synccost.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$D"
}
trap cleanup EXIT

for bin in "${BINS[@]}"; do
    rm -f "$D"/syncserver.db* "$D"/cg.out*
    SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '[syncserver]\npublic_url = http://127.0.0.1:%s\nsecret = %s\nloglevel = warning\n' \
        "$PORT" "$SECRET" > "$D/syncserver.ini"
    valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$bin" \
        --config "$D/syncserver.ini" serve --http "127.0.0.1:$PORT" --workers 1 \
        2> "$D/server.log" &
    PID=$!
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:$PORT/__lbheartbeat__" > /dev/null 2>&1 && break
        sleep 0.1
    done
    common=(--base-url "http://127.0.0.1:$PORT" --secret "$SECRET" --users 4 --concurrency 1)
    # Seed and warm up (caches, lazily opened sessions), then count from zero.
    "$LOAD" "${common[@]}" --records 20 --seed --workload "$WORKLOAD" --duration 2 > /dev/null 2>&1
    callgrind_control -z "$PID" > /dev/null 2>&1
    "$LOAD" "${common[@]}" --workload "$WORKLOAD" --duration "$SECONDS_" \
        --json-out "$D/run.json" > /dev/null
    callgrind_control -d "$PID" > /dev/null 2>&1
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=
    requests=$(python3 -c 'import json, sys
runs = json.load(open(sys.argv[1]))["results"]
print(sum(r["ok"] + sum(r["errors"].values()) for r in runs))' "$D/run.json")
    # The dump taken after the run holds exactly the instructions since the zeroing.
    dump=$(ls -t "$D"/cg.out.* | head -1)
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    echo "$bin: $((ir / requests)) instructions per $WORKLOAD request ($requests requests)"
done
