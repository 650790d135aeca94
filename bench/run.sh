#!/bin/bash
# The benchmark behind BENCHMARKS.md: nginx (keep-alive to the app) in front of
# syncserver-fcgi on a unix socket, a fresh seeded database, every syncload workload
# at a few concurrency levels, and a FastCGI hello-world ceiling on the same nginx
# path in the same run. Everything runs from a temp dir and is stopped on exit.
#
# usage: bench/run.sh [--duration SECS] [--levels 1,4,16] [--users N] [--records N]
#                     [--workloads all|W,W...] [--no-build] [--quick]
#                     [--python URL SECRET]   also load an already running Python
#                                             syncserver (public_url URL, secret SECRET)
# env:   SYNC_PORT (18180), HELLO_PORT (18181), NGINX_WORKERS (1), WORKERS (server --workers),
#        NGINX_EXTRA (directives added to nginx's http block, e.g. 'fastcgi_buffers 16 16k;'),
#        BENCH_OUT (where results go; default bench/results),
#        SERVER_BIN, HELLO_BIN (another syncserver-fcgi / fcgi-hello to measure, e.g. a
#        previous build),
#        SERVE_MODE=inherited (hand the server its socket on stdin, as mod_fcgid does, instead
#        of --bind: Hawk nonces then go through the shared replay file)
# out:   bench/results/{ceiling,ours[,python],startup,process}.json, table.md, chart.svg
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=10 LEVELS=1,4,16 USERS=32 RECORDS=1000 WORKLOADS=all BUILD=1
PY_URL="" PY_SECRET=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --levels) LEVELS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --quick) DURATION=2 LEVELS=1,4 USERS=8 RECORDS=1000; shift ;;
        --python) PY_URL=$2 PY_SECRET=$3; shift 3 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
SYNC_PORT=${SYNC_PORT:-18180} HELLO_PORT=${HELLO_PORT:-18181} NGINX_WORKERS=${NGINX_WORKERS:-1}

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --bins)
fi
REL=$ROOT/target/release
BIN=${SERVER_BIN:-$REL/syncserver-fcgi} LOAD=$REL/syncload HELLO=${HELLO_BIN:-$REL/fcgi-hello}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
KEY=$ROOT/tests/fixtures/oauth-test-key.pk8
OUT=${BENCH_OUT:-$ROOT/bench/results}
mkdir -p "$OUT"

D=$(mktemp -d /tmp/syncbench.XXXXXX)
chmod 755 "$D"
mkdir -p "$D"/nginx/logs "$D"/nginx/tmp "$D"/sock
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # wait_for PATH: until the unix socket exists
    local i
    for i in $(seq 1 500); do [ -S "$1" ] && return 0; sleep 0.01; done
    echo "no socket $1" >&2; exit 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
SYNC_URL=http://127.0.0.1:$SYNC_PORT
cat > "$D/syncserver.ini" <<INI
[syncserver]
public_url = $SYNC_URL
secret = $SECRET
sqluri = sqlite:///$D/syncserver.db
loglevel = warning
[oauth]
jwks = $("$LOAD" jwks --jwt-key "$KEY" --jwt-kid bench-key)
INI

params() {
    cat <<'P'
            fastcgi_keep_conn on;
            fastcgi_param HTTP_HOST         $http_host;
            fastcgi_param REQUEST_URI       $request_uri;
            fastcgi_param QUERY_STRING      $query_string;
            fastcgi_param REQUEST_METHOD    $request_method;
            fastcgi_param CONTENT_TYPE      $content_type;
            fastcgi_param CONTENT_LENGTH    $content_length;
            fastcgi_param SCRIPT_NAME       "";
            fastcgi_param PATH_INFO         $uri;
            fastcgi_param SERVER_PROTOCOL   $server_protocol;
            fastcgi_param REQUEST_SCHEME    $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR       $remote_addr;
            fastcgi_param SERVER_NAME       $server_name;
            fastcgi_param SERVER_PORT       $server_port;
P
}
# deployment.md §3.1 with upstream keep-alive: the same path for the app and the ceiling.
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
    # As in contrib/nginx: a 100-record page (~110 KB) stays in memory.
    fastcgi_buffer_size 16k;
    fastcgi_buffers 32 8k;
    ${NGINX_EXTRA:-}
    upstream sync { server unix:$D/sock/sync.sock; keepalive 16; }
    upstream hello { server unix:$D/sock/hello.sock; keepalive 16; }
    server {
        listen 127.0.0.1:$SYNC_PORT;
        location / {
            fastcgi_pass sync;
$(params)
        }
    }
    server {
        listen 127.0.0.1:$HELLO_PORT;
        location / {
            fastcgi_pass hello;
$(params)
        }
    }
}
CONF

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)," \
     "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); load: $(cut -d' ' -f1-3 /proc/loadavg)"
unset RUST_BACKTRACE
"$NGINX" -p "$D/nginx" -e "$D/nginx/logs/error.log" -c "$D/nginx/nginx.conf" \
    -g "daemon off; worker_processes $NGINX_WORKERS;" & PIDS+=($!)
"$HELLO" --bind "unix:$D/sock/hello.sock" --socket-mode 666 & PIDS+=($!)
wait_for "$D/sock/hello.sock"

if [ "${SERVE_MODE:-bind}" = inherited ]; then
    # Bind the socket here and exec the server with it on stdin, as spawn-fcgi does.
    SERVE=(python3 -c 'import os, socket, sys
os.path.exists(sys.argv[1]) and os.unlink(sys.argv[1])
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); s.listen(128)
os.dup2(s.fileno(), 0); os.execv(sys.argv[2], sys.argv[2:])' "$D/sock/sync.sock"
        "$BIN" --config "$D/syncserver.ini" serve)
else
    SERVE=("$BIN" --config "$D/syncserver.ini" serve --bind "unix:$D/sock/sync.sock" --socket-mode 666)
fi
[ -n "${WORKERS:-}" ] && SERVE+=(--workers "$WORKERS")

echo "== start to first response (signed info/collections through nginx), 10 starts"
"$LOAD" startup --base-url "$SYNC_URL" --secret "$SECRET" --runs 10 -- "${SERVE[@]}" \
    | tee "$OUT/startup.json"

"${SERVE[@]}" 2> "$D/server.log" & SYNC_PID=$!; PIDS+=($SYNC_PID)
wait_for "$D/sock/sync.sock"

echo "== ceiling: FastCGI hello-world through the same nginx"
"$LOAD" --base-url "http://127.0.0.1:$HELLO_PORT/" --workload plain --concurrency "$LEVELS" \
    --duration "$DURATION" --label hello --json-out "$OUT/ceiling.json"
if command -v wrk > /dev/null; then
    echo "   (cross-check, wrk -t2 -c16: $(wrk -t2 -c16 -d"${DURATION}s" "http://127.0.0.1:$HELLO_PORT/" \
        | awk '/Requests\/sec/ {print $2}') req/s)"
fi

echo "== syncserver-fcgi: seeding $USERS users × $RECORDS records, then the workloads"
RSS_START=$(rss_kb $SYNC_PID)
"$LOAD" --base-url "$SYNC_URL" --secret "$SECRET" --jwt-key "$KEY" --jwt-kid bench-key \
    --users "$USERS" --records "$RECORDS" --seed --workload "$WORKLOADS" \
    --concurrency "$LEVELS" --duration "$DURATION" --label ours --json-out "$OUT/ours.json"
RSS_END=$(rss_kb $SYNC_PID)
DB_MB=$(du -m "$D/syncserver.db" | cut -f1)

FILES=("$OUT/ours.json")
if [ -n "$PY_URL" ]; then
    echo "== Python syncserver at $PY_URL"
    "$LOAD" --base-url "$PY_URL" --secret "$PY_SECRET" --users "$USERS" --records "$RECORDS" \
        --seed --workload info,read-page,full-read,batch,put,session --concurrency "$LEVELS" \
        --duration "$DURATION" --label python --json-out "$OUT/python.json"
    FILES+=("$OUT/python.json")
fi

cat > "$OUT/process.json" <<JSON
{"rss_kb_after_first_request": $RSS_START, "rss_kb_after_runs": $RSS_END, "database_mb": $DB_MB,
 "duration_s": $DURATION, "levels": "$LEVELS", "users": $USERS, "records": $RECORDS,
 "nginx_workers": $NGINX_WORKERS, "loadavg_at_end": "$(cut -d' ' -f1-3 /proc/loadavg)"}
JSON
echo "== results (each also as a share of the hello-world ceiling at the same concurrency)"
"$LOAD" report --ceiling "$OUT/ceiling.json" --svg-out "$OUT/chart.svg" "${FILES[@]}" | tee "$OUT/table.md"
echo
echo "RSS of syncserver-fcgi: ${RSS_START} kB after the first request, ${RSS_END} kB after the runs; database ${DB_MB} MB"
if grep -q 'temporary file' "$D/nginx/logs/error.log"; then
    echo "nginx spooled responses to disk $(grep -c 'temporary file' "$D/nginx/logs/error.log") times" \
         "(raise fastcgi_buffers, e.g. NGINX_EXTRA='fastcgi_buffers 16 16k;')"
fi
if grep -qiE 'error|panic' "$D/server.log"; then
    echo "server log (errors):"; grep -iE 'error|panic' "$D/server.log" | head -20
fi
