#!/bin/bash
# The benchmark behind BENCHMARKS.md: nginx (keep-alive to the app) in front of
# syncserver-fcgi on a unix socket, a fresh seeded database, every syncload workload
# at a few concurrency levels, and a FastCGI hello-world ceiling on the same nginx
# path in the same run. Everything runs from a temp dir and is stopped on exit.
#
# usage: bench/run.sh [--duration SECS] [--levels 1,4,16] [--users N] [--records N]
#                     [--workloads all|W,W...] [--no-build] [--quick]
#                     [--db URI]        the server's sqluri instead of a fresh SQLite file:
#                                       any form the server accepts, database included
#                                       (e.g. postgresql://sync:PW@127.0.0.1:5432/bench);
#                                       the database should be empty (tables are created)
#                     [--engines]       SQLite, then MariaDB and PostgreSQL started privately
#                                       by scripts/engines, each on a fresh database, all
#                                       stopped and removed on exit
#                     [--engines-env F] the same on running servers, from a scripts/engines
#                                       env file F (fresh databases, dropped on exit)
#                     [--python URL SECRET]   also load an already running Python
#                                             syncserver (public_url URL, secret SECRET)
# On a server engine the database round trips per request of info, read-page, put, batch
# and token are also counted (strace of the server's writes to the database socket, c=1).
# env:   SYNC_PORT (18180), HELLO_PORT (18181), NGINX_WORKERS (1), WORKERS (server --workers),
#        NGINX_EXTRA (directives added to nginx's http block, e.g. 'fastcgi_buffers 16 16k;'),
#        BENCH_OUT (where results go; default bench/results),
#        SERVER_BIN, HELLO_BIN (another syncserver-fcgi / fcgi-hello to measure, e.g. a
#        previous build),
#        SERVE_MODE=inherited (hand the server its socket on stdin, as mod_fcgid does, instead
#        of --bind: Hawk nonces then go through the shared replay file),
#        ROUNDTRIP_SECONDS (3; 0 skips the round-trip count),
#        CEILING_SECONDS (how long the hello ceiling runs at each level; default --duration),
#        RSS_EVERY (seconds; samples the server's RSS and threads that often during the
#        workloads into rss[-E].tsv and plots it as rss[-E].svg, e.g. for 10 minutes of the session mix:
#        RSS_EVERY=10 bench/run.sh --workloads session --levels 16 --duration 600)
# out:   bench/results/{ceiling,ours[,python],startup,process}.json, table.md, chart.svg;
#        ceiling-wrk.json (the same hello ceiling measured by wrk, when installed);
#        with --db/--engines, per engine E (sqlite, mysql, postgresql): E.json,
#        startup-E.json, process-E.json, roundtrips-E.md; loadavg.tsv (load average before
#        and after every workload)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=10 LEVELS=1,4,16 USERS=32 RECORDS=1000 WORKLOADS=all BUILD=1
PY_URL="" PY_SECRET="" DB_URI="" ENGINES="" ENGINES_ENV=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --levels) LEVELS=$2; shift 2 ;;
        --users) USERS=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --quick) DURATION=2 LEVELS=1,4 USERS=8 RECORDS=1000; shift ;;
        --db) DB_URI=$2; shift 2 ;;
        --engines) ENGINES=start; shift ;;
        --engines-env) ENGINES=env ENGINES_ENV=$2; shift 2 ;;
        --python) PY_URL=$2 PY_SECRET=$3; shift 3 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
SYNC_PORT=${SYNC_PORT:-18180} HELLO_PORT=${HELLO_PORT:-18181} NGINX_WORKERS=${NGINX_WORKERS:-1}
ROUNDTRIP_SECONDS=${ROUNDTRIP_SECONDS:-3}
if [ -n "$DB_URI" ] && [ -n "$ENGINES" ]; then
    echo "--db and --engines/--engines-env exclude each other" >&2; exit 2
fi

# A URI with its password replaced by *** (never print one unmasked).
mask() { sed -E 's#^([^:/]+://[^:@/]*):[^@]*@#\1:***@#' <<< "$1"; }
# The engine a sqluri names by its scheme: sqlite, mysql or postgresql.
engine_of() {
    local scheme=${1%%:*}
    scheme=${scheme,,}
    case "${scheme%%+*}" in
        sqlite) echo sqlite ;;
        mysql|pymysql|mariadb) echo mysql ;;
        postgresql|postgres) echo postgresql ;;
        *) echo "unknown database scheme in $(mask "$1")" >&2; return 1 ;;
    esac
}
pct_decode() { printf '%b' "${1//%/\\x}"; }
# Splits a server URI scheme://user:password@host:port/[db][?...] into U_USER U_PASS
# U_HOST U_PORT U_DB (decoded).
split_uri() {
    local rest=${1#*://} auth hostport path userinfo
    auth=${rest%%/*}
    path=""; [ "$auth" != "$rest" ] && path=${rest#*/}
    path=${path%%\?*}
    userinfo=${auth%@*} hostport=${auth##*@}
    U_USER=$(pct_decode "${userinfo%%:*}") U_PASS=""
    [ "$userinfo" != "${userinfo#*:}" ] && U_PASS=$(pct_decode "${userinfo#*:}")
    U_HOST=${hostport%:*} U_PORT=${hostport##*:}
    [ "$U_PORT" = "$hostport" ] && U_PORT=""
    U_DB=$(pct_decode "$path")
}
# sql URI [DATABASE] STATEMENT: runs STATEMENT with the engine's command-line client over
# TCP, the password in the environment (as tests/common/engines.rs does).
sql() {
    local uri=$1 db=$2 stmt=$3
    split_uri "$uri"
    case $(engine_of "$uri") in
        mysql)
            MYSQL_PWD=$U_PASS "$(command -v mariadb || command -v mysql)" --no-defaults \
                --protocol=tcp -h "$U_HOST" -P "${U_PORT:-3306}" -u "$U_USER" -N -B \
                --default-character-set=utf8mb4 ${db:+"--database=$db"} -e "$stmt" ;;
        postgresql)
            PGPASSWORD=$U_PASS PGCONNECT_TIMEOUT=10 psql -X -q -At -v ON_ERROR_STOP=1 \
                -h "$U_HOST" -p "${U_PORT:-5432}" -U "$U_USER" -d "${db:-postgres}" -c "$stmt" ;;
    esac
}

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
ENGINE_DIR="" DROP=()   # engines we started; "URI<TAB>DATABASE" of databases we created
cleanup() {
    local p x
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    for x in "${DROP[@]}"; do
        sql "${x%%$'\t'*}" "" "DROP DATABASE IF EXISTS $(quote_db "${x%%$'\t'*}" "${x#*$'\t'}")" \
            > /dev/null 2>&1 || echo "could not drop database ${x#*$'\t'}" >&2
    done
    [ -z "$ENGINE_DIR" ] || "$ROOT/scripts/engines" stop "$ENGINE_DIR" || true
    rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
quote_db() { if [ "$(engine_of "$1")" = mysql ]; then echo "\`$2\`"; else echo "\"$2\""; fi; }

wait_for() { # wait_for PATH: until the unix socket exists
    for _ in $(seq 1 500); do [ -S "$1" ] && return 0; sleep 0.01; done
    echo "no socket $1" >&2; exit 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The runs: "NAME<TAB>SQLURI" each. Without --db/--engines: SQLite as label "ours" (as before).
RUNS=()
if [ -n "$DB_URI" ]; then
    RUNS+=("$(engine_of "$DB_URI")"$'\t'"$DB_URI")
elif [ -n "$ENGINES" ]; then
    if [ "$ENGINES" = start ]; then
        ENGINE_DIR=$D/engines
        # Room for the seeded data (32 users x 1,000 x 1 KB and indexes), as a real
        # deployment would give them; the test defaults are small.
        ENGINES_PG_SHARED_BUFFERS=${ENGINES_PG_SHARED_BUFFERS:-256MB} \
            ENGINES_MYSQL_BUFFER_POOL=${ENGINES_MYSQL_BUFFER_POOL:-256M} \
            "$ROOT/scripts/engines" start "$ENGINE_DIR"
        ENGINES_ENV=$ENGINE_DIR/env
    fi
    SYNCSERVER_TEST_MYSQL="" SYNCSERVER_TEST_POSTGRESQL=""
    # shellcheck disable=SC1090
    . "$ENGINES_ENV"
    RUNS+=("sqlite"$'\t'"sqlite:///$D/syncserver.db")
    for server in "$SYNCSERVER_TEST_MYSQL" "$SYNCSERVER_TEST_POSTGRESQL"; do
        [ -n "$server" ] || continue
        server=${server%%\?*}; server=${server%/}/
        name=syncbench_$$_$RANDOM
        if [ "$(engine_of "$server")" = mysql ]; then
            sql "$server" "" "CREATE DATABASE \`$name\` CHARACTER SET utf8mb4"
        else
            sql "$server" "" "CREATE DATABASE \"$name\" ENCODING 'UTF8'"
        fi
        DROP+=("$server"$'\t'"$name")
        RUNS+=("$(engine_of "$server")"$'\t'"$server$name")
    done
else
    RUNS+=("ours"$'\t'"sqlite:///$D/syncserver.db")
fi

SECRET=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
SYNC_URL=http://127.0.0.1:$SYNC_PORT
JWKS=$("$LOAD" jwks --jwt-key "$KEY" --jwt-kid bench-key)
write_ini() { # write_ini SQLURI
    cat > "$D/syncserver.ini" <<INI
[syncserver]
public_url = $SYNC_URL
secret = $SECRET
sqluri = $1
loglevel = warning
[oauth]
jwks = $JWKS
INI
}

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
     "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); load: $(loadavg)"
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

echo "== ceiling: FastCGI hello-world through the same nginx (load: $(loadavg))"
"$LOAD" --base-url "http://127.0.0.1:$HELLO_PORT/" --workload plain --concurrency "$LEVELS" \
    --duration "${CEILING_SECONDS:-$DURATION}" --label hello --json-out "$OUT/ceiling.json"
# The same ceiling from wrk, the lightest client there is, at the same levels: how much of the
# gap to wrk is syncload's own cost. Written as a syncload report (ceiling-wrk.json), so the
# table shows it with a "vs ceiling" ratio (wrk's req/s over syncload's).
CEILING_FILES=()
if command -v wrk > /dev/null; then
    IFS=, read -r -a WRK_LEVELS <<< "$LEVELS"
    : > "$D/wrk.txt"
    for c in "${WRK_LEVELS[@]}"; do
        echo "== wrk -c$c" >> "$D/wrk.txt"
        wrk -t"$(( c < 2 ? c : 2 ))" -c"$c" -d"${CEILING_SECONDS:-$DURATION}s" --latency "http://127.0.0.1:$HELLO_PORT/" \
            >> "$D/wrk.txt"
    done
    python3 - "$D/wrk.txt" "$OUT/ceiling-wrk.json" "http://127.0.0.1:$HELLO_PORT/" <<'PY'
import json, re, sys, time
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}
def ms(v):
    n, u = re.fullmatch(r"([\d.]+)(us|ms|s)", v).groups()
    return round(float(n) * UNIT[u], 3)
results = []
for block in open(sys.argv[1]).read().split("== wrk -c")[1:]:
    c = int(block.split("\n", 1)[0])
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", block, re.M))
    lat = re.search(r"^\s+Latency\s+(\S+)\s+\S+\s+(\S+)", block, re.M)
    n, secs = re.search(r"(\d+) requests in ([\d.]+)s", block).groups()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", block)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", block)
    errors = {"non-2xx": int(bad.group(1))} if bad else {}
    ok = int(n) - sum(errors.values())
    results.append({"workload": "plain", "concurrency": c, "seconds": float(secs), "ok": ok,
        "throughput": round(ok / float(secs), 3),
        "latency_ms": {"p50": ms(pct["50"]), "p90": ms(pct["90"]), "p99": ms(pct["99"]),
                       "max": ms(lat.group(2)), "mean": ms(lat.group(1))},
        "errors": errors,
        "transport_errors": sum(map(int, sock.groups())) if sock else 0})
json.dump({"target": sys.argv[3], "label": "hello (wrk)", "started": int(time.time()),
           "results": results, "setup_requests": 0}, open(sys.argv[2], "w"), indent=2)
PY
    CEILING_FILES+=("$OUT/ceiling-wrk.json")
    python3 - "$OUT/ceiling.json" "$OUT/ceiling-wrk.json" <<'PY'
import json, sys
ours, wrk = ({r["concurrency"]: r["throughput"] for r in json.load(open(f))["results"]} for f in sys.argv[1:])
for c in sorted(ours):
    if c in wrk:
        print(f"   ceiling c={c}: syncload {ours[c]:.0f} req/s, wrk {wrk[c]:.0f} req/s"
              f" (syncload/wrk {100 * ours[c] / wrk[c]:.0f}%)")
PY
else
    echo "   (wrk not installed: the ceiling is syncload's only)"
fi

if [ "$WORKLOADS" = all ]; then
    WL=(info read-page full-read batch put session token)
else
    IFS=, read -r -a WL <<< "$WORKLOADS"
fi
printf 'run\tworkload\tload before\tload after\n' > "$OUT/loadavg.tsv"
AUTH=(--base-url "$SYNC_URL" --secret "$SECRET" --jwt-key "$KEY" --jwt-kid bench-key
      --users "$USERS" --records "$RECORDS")

# Database round trips per request: the server's write(2)s to its database's TCP socket
# (one per round trip: both drivers send a request's messages in one write and then wait
# for the answer) over ROUNDTRIP_SECONDS of each workload at c=1, divided by the requests.
# Each write is also classed by the message it starts with: PostgreSQL Q (simple query,
# possibly several statements), P (parse: a statement prepared), B (bind+execute of a
# prepared statement); MySQL query (COM_QUERY text), prepare, execute (COM_STMT_EXECUTE).
count_roundtrips() { # count_roundtrips NAME SQLURI PID
    local name=$1 uri=$2 pid=$3 w st n req kinds out=$OUT/roundtrips-$1.md
    split_uri "$uri"
    echo "| workload | requests | DB round trips | per request | by first message, per request |" > "$out"
    echo "|---|---:|---:|---:|---|" >> "$out"
    for w in info read-page put batch token; do
        st=$D/strace-$name-$w
        strace -f -qq -yy -xx -s 8 -e trace=write,sendto,sendmsg,writev -p "$pid" -o "$st" &
        local spid=$!
        sleep 1
        # read-page first walks every account's collection once per sort order (3 ×
        # RECORDS/100 page GETs the report does not count): one account, its walk added to
        # the requests. (Writes keep every account: one account's back-to-back writes wait
        # for the next 10 ms tick and retry, which is not the common case.)
        local walk=0 users=()
        if [ "$w" = read-page ]; then walk=$((3 * ((RECORDS + 99) / 100))) users=(--users 1); fi
        "$LOAD" "${AUTH[@]}" "${users[@]}" --workload "$w" --concurrency 1 \
            --duration "$ROUNDTRIP_SECONDS" --label rt --json-out "$D/rt.json" > /dev/null
        kill -INT "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
        req=$(python3 -c 'import json, sys
print(int(sys.argv[2]) + sum(r["ok"] + sum(r["errors"].values()) for r in json.load(open(sys.argv[1]))["results"]))' "$D/rt.json" "$walk")
        n=$(grep -c -- "->[^]]*:$U_PORT\]>" "$st" || true)
        kinds=$(grep -- "->[^]]*:$U_PORT\]>" "$st" | sed -E 's/^[^"]*"//; s/".*$//' \
            | awk -v engine="$name" -v r="$req" '
                { b1 = substr($0, 3, 2); b5 = substr($0, 19, 2) }
                engine == "postgresql" { k = b1 == "51" ? "Q" : b1 == "50" ? "P" : b1 == "42" ? "B" : "other " b1 }
                engine == "mysql" { k = b5 == "03" ? "query" : b5 == "16" ? "prepare" : b5 == "17" ? "execute" : "other " b5 }
                { c[k]++ }
                END { for (k in c) printf "%s %s %.1f", (s++ ? "," : ""), k, (r ? c[k] / r : 0) }')
        echo "| $w | $req | $n | $(awk -v n="$n" -v r="$req" 'BEGIN {printf "%.1f", (r ? n / r : 0)}') |$kinds |" >> "$out"
        rm -f "$st"
    done
    echo "-- database round trips per request ($name, c=1, load: $(loadavg)):"
    cat "$out"
}

FILES=()
for run in "${RUNS[@]}"; do
    name=${run%%$'\t'*} uri=${run#*$'\t'}
    write_ini "$uri"
    suffix=""; [ "$name" = ours ] || suffix=-$name
    echo "== $name: sqluri $(mask "$uri") (load: $(loadavg))"
    echo "== start to first response (signed info/collections through nginx), 10 starts"
    "$LOAD" startup --base-url "$SYNC_URL" --secret "$SECRET" --runs 10 -- "${SERVE[@]}" \
        | tee "$OUT/startup$suffix.json"

    rm -f "$D/sock/sync.sock"
    "${SERVE[@]}" 2> "$D/server-$name.log" & SYNC_PID=$!; PIDS+=("$SYNC_PID")
    wait_for "$D/sock/sync.sock"

    echo "== $name: seeding $USERS users × $RECORDS records, then the workloads"
    RSS_START=$(rss_kb "$SYNC_PID")
    LOAD_START=$(loadavg)
    if [ -n "${RSS_EVERY:-}" ]; then
        (   t=0
            printf 't_s\trss_kb\tthreads\n'
            while [ -e "/proc/$SYNC_PID" ]; do
                printf '%s\t%s\t%s\n' "$t" "$(rss_kb "$SYNC_PID")" \
                    "$(awk '/^Threads:/ {print $2}' "/proc/$SYNC_PID/status")"
                sleep "$RSS_EVERY"; t=$((t + RSS_EVERY))
            done 2> /dev/null
        ) > "$OUT/rss$suffix.tsv" & PIDS+=($!)
    fi
    parts=() seed=(--seed)
    for w in "${WL[@]}"; do
        before=$(loadavg)
        "$LOAD" "${AUTH[@]}" "${seed[@]}" --workload "$w" --concurrency "$LEVELS" \
            --duration "$DURATION" --label "$name" --json-out "$D/part-$name-$w.json"
        printf '%s\t%s\t%s\t%s\n' "$name" "$w" "$before" "$(loadavg)" | tee -a "$OUT/loadavg.tsv"
        parts+=("$D/part-$name-$w.json") seed=()
    done
    # One report per run, as one syncload invocation would have written it.
    python3 -c 'import json, sys
reps = [json.load(open(f)) for f in sys.argv[2:]]
out = dict(reps[0], results=[r for rep in reps for r in rep["results"]])
json.dump(out, open(sys.argv[1], "w"), indent=2)' "$OUT/$name.json" "${parts[@]}"
    FILES+=("$OUT/$name.json")
    RSS_END=$(rss_kb "$SYNC_PID")
    if [ -n "${RSS_EVERY:-}" ]; then
        sleep 1
        python3 - "$OUT/rss$suffix.tsv" "$OUT/rss$suffix.svg" "$name" <<'PY'
# RSS over time as a line chart (MB against minutes), for "flat from minute 2 to minute 10".
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n")[1:] if l.strip()]
pts = [(int(t) / 60, int(kb) / 1024) for t, kb, _ in rows]
if pts:
    W, H, L, B = 640, 320, 50, 30
    xmax = max(max(p[0] for p in pts), 1)
    ymax = max(16, max(p[1] for p in pts)) * 1.1
    x = lambda m: L + (W - L - 10) * m / xmax
    y = lambda mb: H - B - (H - B - 10) * mb / ymax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="12">RSS of syncserver-fcgi ({sys.argv[3]}), MB, sampled every {rows[1][0] if len(rows) > 1 else "?"} s</text>']
    for mb in range(0, int(ymax) + 1, 4):
        out.append(f'<line x1="{L}" x2="{W - 10}" y1="{y(mb):.1f}" y2="{y(mb):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{y(mb) + 4:.1f}" text-anchor="end">{mb}</text>')
    for m in range(0, int(xmax) + 1):
        out.append(f'<text x="{x(m):.1f}" y="{H - B + 16}" text-anchor="middle">{m} min</text>')
    out.append(f'<line x1="{L}" x2="{W - 10}" y1="{y(16):.1f}" y2="{y(16):.1f}" stroke="#c00" stroke-dasharray="4 3"/>')
    out.append('<polyline fill="none" stroke="#06c" stroke-width="2" points="'
               + " ".join(f"{x(m):.1f},{y(mb):.1f}" for m, mb in pts) + '"/>')
    out.append("</svg>")
    open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
    fi
    LOAD_END=$(loadavg)
    split_uri "$uri"
    case $name in
        ours|sqlite) DB_MB=$(du -m "$D/syncserver.db" | cut -f1) ;;
        mysql) DB_MB=$(sql "$uri" "$U_DB" "SELECT ROUND(SUM(data_length + index_length) / 1048576) FROM information_schema.tables WHERE table_schema = DATABASE()" 2>/dev/null || echo null) ;;
        postgresql) DB_MB=$(sql "$uri" "$U_DB" "SELECT pg_database_size(current_database()) / 1048576" 2>/dev/null || echo null) ;;
    esac
    [ -n "$DB_MB" ] || DB_MB=null
    if [ "$name" != ours ] && [ "$name" != sqlite ] && [ "$ROUNDTRIP_SECONDS" != 0 ]; then
        if command -v strace > /dev/null; then
            count_roundtrips "$name" "$uri" "$SYNC_PID"
        else
            echo "(no strace: database round trips not counted; apt-get install strace)"
        fi
    fi
    cat > "$OUT/process$suffix.json" <<JSON
{"rss_kb_after_first_request": $RSS_START, "rss_kb_after_runs": $RSS_END, "database_mb": $DB_MB,
 "duration_s": $DURATION, "levels": "$LEVELS", "users": $USERS, "records": $RECORDS,
 "nginx_workers": $NGINX_WORKERS, "engine": "$name",
 "loadavg_at_start": "$LOAD_START", "loadavg_at_end": "$LOAD_END"}
JSON
    echo "RSS of syncserver-fcgi ($name): ${RSS_START} kB after the first request, ${RSS_END} kB after the runs; database ${DB_MB} MB"
    kill -TERM "$SYNC_PID"; wait "$SYNC_PID" 2>/dev/null || true
    if grep -qiE 'error|panic' "$D/server-$name.log"; then
        echo "server log ($name, errors):"; grep -iE 'error|panic' "$D/server-$name.log" | head -20
    fi
done

if [ -n "$PY_URL" ]; then
    echo "== Python syncserver at $PY_URL"
    "$LOAD" --base-url "$PY_URL" --secret "$PY_SECRET" --users "$USERS" --records "$RECORDS" \
        --seed --workload info,read-page,full-read,batch,put,session --concurrency "$LEVELS" \
        --duration "$DURATION" --label python --json-out "$OUT/python.json"
    FILES+=("$OUT/python.json")
fi

echo "== results (each also as a share of the hello-world ceiling at the same concurrency)"
"$LOAD" report --ceiling "$OUT/ceiling.json" --svg-out "$OUT/chart.svg" "${CEILING_FILES[@]}" "${FILES[@]}" \
    | tee "$OUT/table.md"
echo
echo "load average before/after each workload:"; column -t -s $'\t' "$OUT/loadavg.tsv" 2>/dev/null || cat "$OUT/loadavg.tsv"
if grep -q 'temporary file' "$D/nginx/logs/error.log"; then
    echo "nginx spooled responses to disk $(grep -c 'temporary file' "$D/nginx/logs/error.log") times" \
         "(raise fastcgi_buffers, e.g. NGINX_EXTRA='fastcgi_buffers 16 16k;')"
fi
