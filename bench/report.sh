#!/usr/bin/env bash
# Regenerates BENCHMARKS.md (and bench/charts/*.svg) on this machine, in one run:
#   1. hot event through the router: group commit off (before) and on (after), 64 and 256
#      users, open loop, the three-region cluster; pgbench's claim statement on the same primary;
#   2. reads of one hot event with the node cache's hit ratio and database queries per second;
#   3. availability on a cache miss (node cache off), a 1,000- and a 1,000,000-ticket event;
#   4. cached availability reads through one router, 128 users;
#   5. the cross-region latency matrix; 6. a three-continent on-sale mix;
#   7. id-gen against the format's ceiling;
#   8. 50,000 live stream subscribers in one region (`loadgen watch`), through three routers;
#   9. a queued on-sale, 50,000 users for 10,000 tickets from three regions (`loadgen queue`).
# Every loadgen run reports the CPU per request of each process (router, node, PostgreSQL,
# devcluster, loadgen) over its steady window, from the PIDs in cluster.json.
# The raw results (loadgen's JSON reports, pgbench's output, criterion's estimates) are kept in
# bench/results/, so that the file can be re-rendered with `loadgen benchmarks`.
# usage: bench/report.sh        (DURATION=15s per load run; takes about 14 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15s}
BASE_PORT=${BASE_PORT:-18800}
RESULTS=bench/results
WORK=$(mktemp -d /tmp/bench-report-XXXXXX)
# The PostgreSQL servers run as the `postgres` user when we are root: let them in.
chmod 755 "$WORK"
rm -rf "$RESULTS"
mkdir -p "$RESULTS" bench/charts
PG_BIN=$(pg_config --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)
LOADGEN=./target/release/loadgen
DEVCLUSTER_PID=

echo "building (release)"
cargo build --release -q -p devcluster -p loadgen

stop_cluster() {
    if [ -n "$DEVCLUSTER_PID" ]; then
        kill "$DEVCLUSTER_PID" 2>/dev/null || true
        wait "$DEVCLUSTER_PID" 2>/dev/null || true
        DEVCLUSTER_PID=
    fi
}
trap 'stop_cluster; rm -rf "$WORK"' EXIT

# start_cluster NAME [devcluster args...]: waits for its cluster.json. Rate limits are raised a
# thousandfold: loadgen's users all come from 127.0.0.1, and the limiters stay on the hot path.
start_cluster() {
    local name=$1
    shift
    CLUSTER_DIR="$WORK/$name"
    ./target/release/devcluster --state-dir "$CLUSTER_DIR" --base-port "$BASE_PORT" \
        --rate-limit-scale 1000 "$@" \
        > "$WORK/$name.log" 2>&1 &
    DEVCLUSTER_PID=$!
    for _ in $(seq 600); do [ -s "$CLUSTER_DIR/cluster.json" ] && return; sleep 0.1; done
    echo "devcluster did not start:"; cat "$WORK/$name.log"; exit 1
}

# availability NAME EVENT [loadgen args...]: us-east users reading EVENT's availability.
availability() {
    local name=$1 event=$2
    shift 2
    echo "== $name"
    "$LOADGEN" run --cluster "$CLUSTER_DIR/cluster.json" --scenario browse --reads availability \
        --event "$event" --clients us-east --accounts 1 --duration "$DURATION" --title "$name" \
        "$@" || echo "(loadgen saw errors or a failed audit: they are in the report)"
}

# hot NAME USERS|--rate R [loadgen args...]: reserves of 1 GA on a fresh 200,000-ticket event.
hot() {
    local name=$1
    shift
    echo "== $name"
    "$LOADGEN" run --cluster "$CLUSTER_DIR/cluster.json" --scenario onsale --clients us-east \
        --home us-east --tiers GA=200000 --quantity 1 --outcomes abandon=1 \
        --duration "$DURATION" --title "$name" --json "$RESULTS/$name.json" "$@" \
        || echo "(loadgen saw errors or a failed audit: they are in the report)"
}

echo "$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p')), $(free -g | awk '/Mem:/{print $2}') GiB, \
$(. /etc/os-release && echo "$PRETTY_NAME"), $("$PG_BIN/postgres" --version | sed 's/postgres (PostgreSQL) /PostgreSQL /')" \
    > "$RESULTS/machine.txt"
date -u +%Y-%m-%d > "$RESULTS/date.txt"
echo "$DURATION" > "$RESULTS/duration.txt"

# 1. Before: one transaction per reserve.
TICKETING_NODE_BOOKING__BATCH_RESERVES=false start_cluster before --regions us-east
hot hot-before-64 --users 64
hot hot-before-256 --users 256
stop_cluster

# 1. After: group commit; then pgbench on the same primary.
start_cluster after --regions us-east
hot hot-64 --users 64
hot hot-256 --users 256 --svg bench/charts/hot-256.svg
hot hot-open --rate 5000
# 4. Cached availability reads through the router, flat out.
CACHED_EVENT=$("$LOADGEN" create-event --cluster "$CLUSTER_DIR/cluster.json" --tiers GA=1000 \
    --name "cached reads")
availability "cached availability reads" "$CACHED_EVENT" --users 128 \
    --json "$RESULTS/cached-reads.json"
PRIMARY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["regions"][0]["primary"])' "$CLUSTER_DIR/cluster.json")
# A fresh event and one booking (the claim's booking_id must exist: deferred foreign key).
"$LOADGEN" run --cluster "$CLUSTER_DIR/cluster.json" --scenario onsale --clients us-east \
    --tiers GA=200000 --quantity 1 --outcomes abandon=1 --users 1 --accounts 1 \
    --max-journeys 1 --title pgbench --json "$RESULTS/pgbench-setup.json" > /dev/null
EVENT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events"][0]["id"])' "$RESULTS/pgbench-setup.json")
read -r BOOKING HOLDER < <("$PG_BIN/psql" -qAt -F ' ' "$PRIMARY" \
    -c "SELECT id, user_id FROM bookings WHERE event_id = $EVENT LIMIT 1")
for run in "1 16" "1 64" "32 64"; do
    read -r per clients <<< "$run"
    echo "== pgbench: $per ticket(s) per statement, $clients clients"
    "$PG_BIN/pgbench" -n -M prepared -f "bench/claim-$per.sql" -c "$clients" -j 2 -T 15 \
        -D event="$EVENT" -D booking="$BOOKING" -D holder="$HOLDER" "$PRIMARY" \
        | tee "$RESULTS/pgbench-$per-$clients.txt" | grep -E "^tps"
done
stop_cluster

# 3. Availability on a cache miss: the node's read cache off (a TTL of 0 is no cache), reads of a
# 1,000- and a 1,000,000-ticket event.
TICKETING_NODE_READS__CACHE_TTL_MS=0 start_cluster miss --regions us-east
for tickets in 1000 1000000; do
    event=$("$LOADGEN" create-event --cluster "$CLUSTER_DIR/cluster.json" --tiers "GA=$tickets" \
        --name "$tickets tickets")
    availability "availability on a cache miss, $tickets tickets" "$event" --users 16 \
        --json "$RESULTS/cache-miss-$tickets.json"
done
stop_cluster

# 1 (three regions), 2, 5 and 6 on the default three-region cluster.
start_cluster three
sleep 3  # let the lag watchers take their first samples
hot hot-three-regions-256 --users 256
echo "== reads"
"$LOADGEN" run --cluster "$CLUSTER_DIR/cluster.json" --scenario mix --mix browse=90,onsale=10 \
    --reads availability --clients us-east --users 64 --duration "$DURATION" \
    --title "reads of one hot event" --json "$RESULTS/reads.json"
echo "== global"
"$LOADGEN" run --cluster "$CLUSTER_DIR/cluster.json" --scenario global --users 24 \
    --quantity 1-2 --outcomes confirm=1 --duration "$DURATION" \
    --title "cross-region bookings" --json "$RESULTS/global.json" --svg bench/charts/global.svg
echo "== on-sale across three continents"
"$LOADGEN" run --cluster "$CLUSTER_DIR/cluster.json" --scenario mix --rate 300 \
    --duration "$DURATION" --title "on-sale across three continents" \
    --json "$RESULTS/onsale.json" --svg bench/charts/onsale.svg
# 8. Live streams: 50,000 subscribers in eu-west to a us-east event, bookings from
# ap-southeast (about a minute: 25 s of ramp at 2,000 streams/s, 20 s held). Its own cluster,
# with three routers per region: this machine caps every process at 20,000 open files (without
# CAP_SYS_RESOURCE not even root raises it) and a held stream is a descriptor, so one router
# cannot hold 50,000; loadgen likewise holds them in worker processes of 16,000 each.
stop_cluster
start_cluster streams --routers-per-region 3
sleep 3  # let the lag watchers take their first samples
echo "== live streams"
"$LOADGEN" watch --cluster "$CLUSTER_DIR/cluster.json" --subscribers 50000 --region eu-west \
    --home us-east --writer ap-southeast --changes 5 --change-interval 2s --duration 20s \
    --ramp 2000 --reads 50 --title "50,000 stream subscribers" --json "$RESULTS/watch.json" \
    || echo "(loadgen saw failures: they are in the report)"
# 9. A queued on-sale: 10,000 tickets, 50,000 users joining within 10 s from the three regions
# (under a minute: users give up once no ticket is left; at most 90 s past the join window).
echo "== queued on-sale"
"$LOADGEN" queue --cluster "$CLUSTER_DIR/cluster.json" --users 50000 --tickets 10000 \
    --join-window 10s --opens-in 3s --home us-east --target-active 500 \
    --max-admit-per-second 1000 --pass-seconds 60 --max-wait 90s --title "queued on-sale" \
    --json "$RESULTS/queue.json" \
    || echo "(loadgen saw failures: they are in the report)"
stop_cluster

# 7. id-gen.
echo "== id-gen"
cargo bench -q -p id-gen --bench generate -- --noplot > "$WORK/idgen.log" 2>&1
for bench in 1_thread_system_clock 1_thread_ticking_clock 8_threads_system_clock 8_threads_ticking_clock; do
    cp "target/criterion/next_id/$bench/new/estimates.json" "$RESULTS/idgen-$bench.json"
done

"$LOADGEN" benchmarks --results "$RESULTS" --out BENCHMARKS.md
echo "BENCHMARKS.md written"
