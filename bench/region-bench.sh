#!/usr/bin/env bash
# The multi-region figures of BENCHMARKS.md: a release devcluster at the default latency scale,
# the cross-region latency matrix through the routers, replica lag per link, and the cache hit
# ratio of read-heavy load (wrk on ap-southeast's router reading a us-east event while us-east
# sells it). usage: bench/region-bench.sh   (SAMPLES=40, DURATION=15s)
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLES=${SAMPLES:-40}
DURATION=${DURATION:-15s}
BASE_PORT=${BASE_PORT:-18400}
WORK=$(mktemp -d /tmp/region-bench-XXXXXX)
chmod 755 "$WORK"

cargo build --release -q -p devcluster
started=$(date +%s.%N)
./target/release/devcluster --state-dir "$WORK/dc" --base-port "$BASE_PORT" > "$WORK/devcluster.log" 2>&1 &
DEVCLUSTER=$!
trap 'kill $DEVCLUSTER 2>/dev/null; wait $DEVCLUSTER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 600); do [ -s "$WORK/dc/cluster.json" ] && break; sleep 0.1; done
[ -s "$WORK/dc/cluster.json" ] || { echo "devcluster did not start:"; cat "$WORK/devcluster.log"; exit 1; }
echo "devcluster (release, 3 regions) up in $(echo "$(date +%s.%N) - $started" | bc) s"
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB"
sleep 3  # let the lag watchers take a few samples

python3 bench/latency_matrix.py "$WORK/dc/cluster.json" "$SAMPLES"

read -r AP_ROUTER AP_NODE US_ROUTER US_EVENT US_TOKEN < <(python3 - "$WORK/dc/cluster.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
r = {x["name"]: x for x in c["regions"]}
e = {x["homeRegion"]: x["id"] for x in c["demo"]["events"]}
t = [u["token"] for u in c["demo"]["users"] if u["homeRegion"] == "us-east"][0]
print(r["ap-southeast"]["router"], r["ap-southeast"]["node"], r["us-east"]["router"], e["us-east"], t)
PY
)
cache() { curl -s "$AP_NODE/api/v1/cluster" | python3 -c 'import json,sys; c=json.load(sys.stdin)["cache"]; print(c["hits"], c["misses"])'; }
read -r HITS0 MISSES0 < <(cache)
# A sale going on at home meanwhile: one reserve every 50 ms in us-east.
( end=$((SECONDS + ${DURATION%s})); while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null -X POST "$US_ROUTER/api/v1/booking/reserve" -H "Authorization: Bearer $US_TOKEN" \
      -d "{\"eventId\":\"$US_EVENT\",\"tickets\":[{\"tier\":\"GA\",\"quantity\":1}]}"; sleep 0.05; done ) &
WRITER=$!
echo
echo "read-heavy: availability of a us-east event on ap-southeast's router, 64 connections, $DURATION:"
EVENT_ID=$US_EVENT wrk -t2 -c64 -d"$DURATION" -s bench/availability.lua "$AP_ROUTER" | grep RESULT
wait $WRITER || true
read -r HITS1 MISSES1 < <(cache)
python3 - "$HITS0" "$MISSES0" "$HITS1" "$MISSES1" "${DURATION%s}" <<'PY'
import sys
h0, m0, h1, m1, seconds = map(float, sys.argv[1:])
hits, misses = h1 - h0, m1 - m0
print(f"cache: {hits:.0f} hits, {misses:.0f} misses, hit ratio {hits / (hits + misses):.4f}; "
      f"reads reaching the replica: {misses / seconds:.1f} per second")
PY
