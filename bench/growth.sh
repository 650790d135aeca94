#!/bin/bash
# Growth (issue 14): how the server holds up as the SQLite database grows. nginx (keep-alive)
# in front of syncserver-fcgi on a unix socket, as in bench/run.sh, three phases:
#   size         read-page (a newest-first 100-record page of a 1,000-record history) and
#                batch (POST 100 × 1 KB, batch=true&commit=true) at c=16 on a fresh database of
#                SMALL users × RECORDS, then on one of BIG users × RECORDS (~1 GB at 1,000 ×
#                1,000; requests spread over every user), and on the big one again with only
#                SMALL users loaded (what the size alone costs)
#   purge        on the big database (seeded with EXPIRING records per user that expire a second
#                after they are written): `purge --grace-period 0` while put (c=4, all users)
#                and read-page (c=4, 100 users) run in one-second windows; the windows that
#                overlap the purge against the ones before and after it
#   collections  a fresh database of SMALL users × RECORDS history records plus 10, then 100,
#                then 1,000 collections per user: info/collections and a history page at c=16
# Seeding goes through the server (syncload --seed over HTTP): the server made every row.
#
# usage: bench/growth.sh [--duration SECS (10)] [--small N (16)] [--big N (1000)]
#                        [--records N (1000)] [--expiring N (100)] [--windows N (60)]
#                        [--phases size,purge,collections] [--no-build]
# env:   SYNC_PORT (18377), BENCH_OUT (bench/results), SERVER_BIN (the server measured),
#        PURGE_BINS ("A B ...": binaries whose `purge` is measured in turn on the same big
#        database, the expired records written again before each; default SERVER_BIN),
#        GROWTH_TMP (where the temp dir with the databases goes; default /tmp)
# out:   BENCH_OUT/growth-{small,big,big-small}.json, growth-purge-N.tsv (windows),
#        growth-collections-{10,100,1000}.json, growth.md (the tables)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=10 SMALL=16 BIG=1000 RECORDS=1000 EXPIRING=100 WINDOWS=60 BUILD=1
PHASES=size,purge,collections
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --small) SMALL=$2; shift 2 ;;
        --big) BIG=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --expiring) EXPIRING=$2; shift 2 ;;
        --windows) WINDOWS=$2; shift 2 ;;
        --phases) PHASES=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
has_phase() { [[ ",$PHASES," == *",$1,"* ]]; }

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --bins)
fi
REL=$ROOT/target/release
BIN=${SERVER_BIN:-$REL/syncserver-fcgi} LOAD=$REL/syncload
read -r -a PURGE_BINS <<< "${PURGE_BINS:-$BIN}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
OUT=${BENCH_OUT:-$ROOT/bench/results}
SYNC_PORT=${SYNC_PORT:-18377}
mkdir -p "$OUT"

D=$(mktemp -d "${GROWTH_TMP:-/tmp}/syncgrowth.XXXXXX")
chmod 755 "$D"
mkdir -p "$D"/nginx/logs "$D"/nginx/tmp "$D"/sock
PIDS=() SYNC_PID=""
cleanup() {
    local p
    for p in "${PIDS[@]}" $SYNC_PID; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}" $SYNC_PID; do wait "$p" 2>/dev/null || true; done
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
wait_for() { # wait_for PATH: until the unix socket exists
    for _ in $(seq 1 500); do [ -S "$1" ] && return 0; sleep 0.01; done
    echo "no socket $1" >&2; exit 1
}

SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
SYNC_URL=http://127.0.0.1:$SYNC_PORT
write_ini() { # write_ini DBFILE
    printf '[syncserver]\npublic_url = %s\nsecret = %s\nsqluri = sqlite:///%s\nloglevel = warning\n' \
        "$SYNC_URL" "$SECRET" "$1" > "$D/syncserver.ini"
}
cat > "$D/nginx/nginx.conf" <<CONF
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path tmp/body;  fastcgi_temp_path tmp/fastcgi;
    proxy_temp_path tmp/proxy;  scgi_temp_path tmp/scgi;  uwsgi_temp_path tmp/uwsgi;
    client_max_body_size 3m;
    client_body_buffer_size 256k;
    fastcgi_buffer_size 16k;
    fastcgi_buffers 32 8k;
    upstream sync { server unix:$D/sock/sync.sock; keepalive 16; }
    server {
        listen 127.0.0.1:$SYNC_PORT;
        location / {
            fastcgi_pass sync;
            fastcgi_keep_conn on;
            fastcgi_param HTTP_HOST         \$http_host;
            fastcgi_param REQUEST_URI       \$request_uri;
            fastcgi_param QUERY_STRING      \$query_string;
            fastcgi_param REQUEST_METHOD    \$request_method;
            fastcgi_param CONTENT_TYPE      \$content_type;
            fastcgi_param CONTENT_LENGTH    \$content_length;
            fastcgi_param SCRIPT_NAME       "";
            fastcgi_param PATH_INFO         \$uri;
            fastcgi_param SERVER_PROTOCOL   \$server_protocol;
            fastcgi_param REQUEST_SCHEME    \$scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR       \$remote_addr;
            fastcgi_param SERVER_NAME       \$server_name;
            fastcgi_param SERVER_PORT       \$server_port;
        }
    }
}
CONF
unset RUST_BACKTRACE
"$NGINX" -p "$D/nginx" -e "$D/nginx/logs/error.log" -c "$D/nginx/nginx.conf" \
    -g "daemon off; worker_processes 1;" & PIDS+=($!)
sleep 0.3
kill -0 "${PIDS[0]}" 2>/dev/null || { echo "nginx did not start (port $SYNC_PORT taken? set SYNC_PORT)" >&2; exit 1; }

start_server() { # start_server DBFILE
    write_ini "$1"
    rm -f "$D/sock/sync.sock"
    "$BIN" --config "$D/syncserver.ini" serve --bind "unix:$D/sock/sync.sock" --socket-mode 666 \
        2>> "$D/server.log" & SYNC_PID=$!
    wait_for "$D/sock/sync.sock"
}
stop_server() {
    [ -n "$SYNC_PID" ] || return 0
    kill -TERM "$SYNC_PID"; wait "$SYNC_PID" 2>/dev/null || true; SYNC_PID=""
}
AUTH=(--base-url "$SYNC_URL" --secret "$SECRET")
# seed USERS RECORDS [syncload options...]: seeding only (plus one tiny info run), timed.
seed() {
    local users=$1 records=$2 t0; shift 2
    t0=$(date +%s.%N)
    "$LOAD" "${AUTH[@]}" --users "$users" --records "$records" --seed "$@" --workload info \
        --concurrency 1 --duration 0.2 > /dev/null
    SEED_SECONDS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')
}
db_mb() { du -m "$1" | cut -f1; }  # the main file (checkpointed at shutdown)
META=$OUT/growth-meta.tsv
printf 'what\tvalue\n' > "$META"
meta() { printf '%s\t%s\n' "$1" "$2" | tee -a "$META"; }
meta machine "$(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
meta duration_s "$DURATION"

BIGDB=$D/big.db
big_ready=0
seed_big() {
    [ "$big_ready" = 1 ] && return 0
    start_server "$BIGDB"
    echo "== seeding $BIG users × $RECORDS records + $EXPIRING expiring (ttl 1 s) each (load: $(loadavg))"
    seed "$BIG" "$RECORDS" --expiring "$EXPIRING"
    meta big_seed_seconds "$SEED_SECONDS"
    stop_server   # checkpoints the WAL: the size below is the database's
    meta big_db_mb "$(db_mb "$BIGDB")"
    start_server "$BIGDB"
    big_ready=1
}

if has_phase size; then
    echo "== size: $SMALL users × $RECORDS records (fresh database; load: $(loadavg))"
    start_server "$D/small.db"
    seed "$SMALL" "$RECORDS"
    meta small_seed_seconds "$SEED_SECONDS"
    "$LOAD" "${AUTH[@]}" --users "$SMALL" --records "$RECORDS" --workload read-page,batch \
        --sort newest --concurrency 16 --duration "$DURATION" --label "$SMALL users" \
        --json-out "$OUT/growth-small.json"
    stop_server
    meta small_db_mb "$(db_mb "$D/small.db")"
    rm -f "$D"/small.db*
    seed_big
    echo "== size: $BIG users × $RECORDS records (load: $(loadavg))"
    "$LOAD" "${AUTH[@]}" --users "$BIG" --records "$RECORDS" --workload read-page,batch \
        --sort newest --concurrency 16 --duration "$DURATION" --label "$BIG users" \
        --json-out "$OUT/growth-big.json"
    echo "== size: the same big database, only $SMALL of its users loaded (load: $(loadavg))"
    "$LOAD" "${AUTH[@]}" --users "$SMALL" --records "$RECORDS" --workload read-page,batch \
        --sort newest --concurrency 16 --duration "$DURATION" --label "$BIG users, $SMALL loaded" \
        --json-out "$OUT/growth-big-small.json"
fi

expired_count() {
    python3 -c 'import sqlite3, sys, time
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(c.execute("SELECT COUNT(*) FROM bso WHERE ttl < ?", (int(time.time()),)).fetchone()[0])' "$1"
}
# stamp FILE: each stdout line prefixed with the time it arrived (a window's end).
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$1"; }

if has_phase purge; then
    seed_big
    conc=$(printf '4,%.0s' $(seq 1 "$WINDOWS")); conc=${conc%,}
    n=0
    for pb in "${PURGE_BINS[@]}"; do
        n=$((n + 1))
        if [ "$n" -gt 1 ]; then
            echo "== writing the expiring records again ($BIG users × $EXPIRING)"
            seed "$BIG" 0 --expiring "$EXPIRING"
            sleep 2
        fi
        expired=$(expired_count "$BIGDB")
        echo "== purge $n ($pb): $expired expired records, put + read-page at c=4 each in 1 s windows (load: $(loadavg))"
        "$LOAD" "${AUTH[@]}" --users 100 --records "$RECORDS" --workload read-page --sort newest \
            --concurrency "$conc" --duration 1 --label reader > >(stamp "$D/reader.txt") & rp=$!
        for _ in $(seq 1 600); do [ -s "$D/reader.txt" ] && break; sleep 0.1; done
        "$LOAD" "${AUTH[@]}" --users "$BIG" --workload put \
            --concurrency "$conc" --duration 1 --label writer > >(stamp "$D/writer.txt") & wp=$!
        for _ in $(seq 1 100); do [ -s "$D/writer.txt" ] && break; sleep 0.1; done
        sleep 4
        t0=$(date +%s.%N)
        # (this branch's purge logs its chunk count and longest chunk at info)
        RUST_LOG=warn,syncserver_fcgi::admin::purge=info \
            "$pb" --config "$D/syncserver.ini" purge --grace-period 0 --json > "$D/purge.json"
        t1=$(date +%s.%N)
        cat "$D/purge.json"; echo
        sleep 5
        kill -TERM "$rp" "$wp" 2>/dev/null || true
        wait "$rp" "$wp" 2>/dev/null || true
        sleep 0.5   # the stamping readers see end of file
        python3 - "$D/reader.txt" "$D/writer.txt" "$t0" "$t1" "$expired" "$pb" "$D/purge.json" \
            > "$OUT/growth-purge-$n.tsv" <<'PY'
import json, re, sys
reader, writer, t0, t1, expired, binary, purge = sys.argv[1:8]
t0, t1 = float(t0), float(t1)
pat = re.compile(r"^(\S+) (\S+)\s+c=\d+\s+([\d.]+) req/s\s+p50 ([\d.]+) ms\s+p90 ([\d.]+) ms\s+"
                 r"p99 ([\d.]+) ms\s+max ([\d.]+) ms(.*)$")
print("# purge of %s expired records by %s: %.2f s; %s" % (expired, binary, t1 - t0,
      open(purge).read().strip()))
print("workload\tstart\tend\tduring_purge\treq_s\tp50\tp99\tmax\terrors")
for f in (reader, writer):
    prev = None
    for line in open(f):
        m = pat.match(line.strip())
        if not m:
            continue
        end = float(m.group(1))
        start = prev if prev is not None else end - 1.0
        prev = end
        during = start < t1 and end > t0
        print("\t".join([m.group(2), "%.2f" % (start - t0), "%.2f" % (end - t0),
                         "yes" if during else "no", m.group(3), m.group(4), m.group(6),
                         m.group(7), m.group(8).strip() or "0"]))
PY
        cat "$OUT/growth-purge-$n.tsv"
    done
fi
stop_server
[ "$big_ready" = 1 ] && rm -f "$BIGDB"*

if has_phase collections; then
    CDB=$D/collections.db
    start_server "$CDB"
    first=1
    for nc in 10 100 1000; do
        echo "== collections: $SMALL users, $nc collections each (load: $(loadavg))"
        if [ "$first" = 1 ]; then seed "$SMALL" "$RECORDS" --collections "$nc"; first=0
        else seed "$SMALL" 0 --collections "$nc"; fi
        meta "collections_${nc}_seed_seconds" "$SEED_SECONDS"
        "$LOAD" "${AUTH[@]}" --users "$SMALL" --records "$RECORDS" --workload info,read-page \
            --sort newest --concurrency 16 --duration "$DURATION" --label "$nc collections" \
            --json-out "$OUT/growth-collections-$nc.json"
    done
    stop_server
    rm -f "$CDB"*
fi

echo "== tables"
python3 - "$OUT" <<'PY' | tee "$OUT/growth.md"
import glob, json, os, sys
out = sys.argv[1]
def rows(f):
    rep = json.load(open(f))
    for r in rep["results"]:
        l = r["latency_ms"]
        errs = sum(r["errors"].values()) + r.get("transport_errors", 0)
        yield rep["label"], r, l, errs
print("| database | workload | c | req/s | p50 ms | p99 ms | max ms | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for name in ("small", "big", "big-small"):
    f = os.path.join(out, "growth-%s.json" % name)
    if os.path.exists(f):
        for label, r, l, errs in rows(f):
            print("| %s | %s | %d | %.0f | %.2f | %.2f | %.1f | %d |" % (
                label, r["workload"], r["concurrency"], r["throughput"], l["p50"], l["p99"], l["max"], errs))
for f in sorted(glob.glob(os.path.join(out, "growth-purge-*.tsv"))):
    lines = open(f).read().splitlines()
    print("\n" + lines[0])
    print("\n| workload | windows | req/s | p99 ms (worst window) | max ms |")
    print("|---|---|---:|---:|---:|")
    data = [l.split("\t") for l in lines[2:]]
    for w in ("read-page", "put"):
        for during in ("no", "yes"):
            ws = [d for d in data if d[0] == w and d[3] == during]
            if not ws:
                continue
            print("| %s | %s (%d) | %.0f | %.2f | %.1f |" % (
                w, "during purge" if during == "yes" else "without purge", len(ws),
                sum(float(d[4]) for d in ws) / len(ws), max(float(d[6]) for d in ws),
                max(float(d[7]) for d in ws)))
cs = [(n, os.path.join(out, "growth-collections-%d.json" % n)) for n in (10, 100, 1000)]
if any(os.path.exists(f) for _, f in cs):
    print("\n| collections per user | workload | req/s | p50 ms | p99 ms | max ms | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n, f in cs:
        if os.path.exists(f):
            for label, r, l, errs in rows(f):
                print("| %d | %s | %.0f | %.2f | %.2f | %.1f | %d |" % (
                    n, r["workload"], r["throughput"], l["p50"], l["p99"], l["max"], errs))
PY
echo; column -t -s $'\t' "$META"
if grep -qiE 'error|panic' "$D/server.log"; then
    echo "server log (errors):"; grep -iE 'error|panic' "$D/server.log" | head -20
fi
