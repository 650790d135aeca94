#!/bin/bash
# CPU instructions the server spends per request of one workload, counted by callgrind: a
# figure that does not depend on what else the machine is doing, so two builds (or two
# replay-state modes) can be compared on a busy box. It measures the application path
# (routing, auth, replay guard, database, JSON) through the local HTTP listener, not the
# FastCGI front end (bench/run.sh measures that, in time, through nginx).
#
# usage: bench/cost.sh [--workload info] [--seconds 20] [--records 20] [--sort S[,S]]
#                     [--collections N] [--cpu] [SERVER_BIN...]
#        (default SERVER_BIN: target/release/syncserver-fcgi; build it first)
# --records: history records seeded per user; --sort: read-page's orders (syncload --sort);
# --collections: N more collections per user, one record each (syncload --collections).
# prints one line per binary: instructions per request, requests counted (read-page's walk
# to learn the pages is counted too: it is in the instructions)
# --cpu: run the server natively and print its CPU time (user + system, /proc/PID/stat) per
# request instead: system calls (pread of database pages) count too, but so does the noise of
# a busy machine, so take several runs.
# COST_KEEP=PREFIX keeps each binary's callgrind profile as PREFIX.BINARY (callgrind_annotate).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORKLOAD=info SECONDS_=20 RECORDS=20 SORT=index,newest,oldest CPU= COLLECTIONS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --workload) WORKLOAD=$2; shift 2 ;;
        --seconds) SECONDS_=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --sort) SORT=$2; shift 2 ;;
        --collections) COLLECTIONS=$2; shift 2 ;;
        --cpu) CPU=1; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
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
TICK=$(getconf CLK_TCK)
# utime + stime of $PID, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }

for bin in "${BINS[@]}"; do
    rm -f "$D"/syncserver.db* "$D"/cg.out*
    SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    printf '[syncserver]\npublic_url = http://127.0.0.1:%s\nsecret = %s\nloglevel = warning\n' \
        "$PORT" "$SECRET" > "$D/syncserver.ini"
    runner=(valgrind --tool=callgrind --callgrind-out-file="$D/cg.out")
    [ -n "$CPU" ] && runner=()
    "${runner[@]}" "$bin" --config "$D/syncserver.ini" serve --http "127.0.0.1:$PORT" --workers 1 \
        2> "$D/server.log" &
    PID=$!
    for _ in $(seq 1 300); do
        curl -fs "http://127.0.0.1:$PORT/__lbheartbeat__" > /dev/null 2>&1 && break
        sleep 0.1
    done
    common=(--base-url "http://127.0.0.1:$PORT" --secret "$SECRET" --users 4 --concurrency 1
        --sort "$SORT")
    # Seed and warm up (caches, lazily opened sessions), then count from zero.
    "$LOAD" "${common[@]}" --records "$RECORDS" --seed --collections "$COLLECTIONS" --workload "$WORKLOAD" --duration 2 > /dev/null 2>&1
    [ -z "$CPU" ] && callgrind_control -z "$PID" > /dev/null 2>&1
    before=$(cpu_ticks)
    "$LOAD" "${common[@]}" --workload "$WORKLOAD" --duration "$SECONDS_" \
        --json-out "$D/run.json" > /dev/null
    after=$(cpu_ticks)
    [ -z "$CPU" ] && callgrind_control -d "$PID" > /dev/null 2>&1
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=
    requests=$(python3 -c 'import json, sys
report = json.load(open(sys.argv[1]))
runs = report["results"]
print(report.get("setup_requests", 0) + sum(r["ok"] + sum(r["errors"].values()) for r in runs))' "$D/run.json")
    if [ -n "$CPU" ]; then
        echo "$bin: $(((after - before) * 1000000 / TICK / requests)) µs of CPU per $WORKLOAD" \
            "request ($requests requests)"
        continue
    fi
    # The dump taken after the run holds exactly the instructions since the zeroing.
    dump=$(ls -t "$D"/cg.out.* | head -1)
    [ -n "${COST_KEEP:-}" ] && cp "$dump" "$COST_KEEP.$(basename "$bin")"
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
    echo "$bin: $((ir / requests)) instructions per $WORKLOAD request ($requests requests)"
done
