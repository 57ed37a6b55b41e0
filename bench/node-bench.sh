#!/usr/bin/env bash
# One region-node under load (release build, durable PostgreSQL, everything on this machine):
# reserve and availability-read throughput and latency at 64 and 256 connections, then the
# oversell audit. usage: bench/node-bench.sh   (DURATION=20s, TICKETS=100000 per event,
# BATCH=true: group commit of
# concurrent reserves; BATCH=false measures one transaction per reserve)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20s}
BASE_PORT=${BASE_PORT:-18000}
WORK=$(mktemp -d /tmp/node-bench-XXXXXX)
# The PostgreSQL servers run as the `postgres` user when we are root: let them in.
chmod 755 "$WORK"

cargo build --release -q -p devcluster
export TICKETING_NODE_BOOKING__BATCH_RESERVES=${BATCH:-true}
echo "reserve batching: $TICKETING_NODE_BOOKING__BATCH_RESERVES"
./target/release/devcluster --regions us-east --state-dir "$WORK/dc" --base-port "$BASE_PORT" \
    > "$WORK/devcluster.log" 2>&1 &
DEVCLUSTER=$!
trap 'kill $DEVCLUSTER 2>/dev/null; wait $DEVCLUSTER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 300); do [ -s "$WORK/dc/cluster.json" ] && break; sleep 0.2; done
[ -s "$WORK/dc/cluster.json" ] || { echo "devcluster did not start:"; cat "$WORK/devcluster.log"; exit 1; }
NODE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["regions"][0]["node"])' "$WORK/dc/cluster.json")
PRIMARY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["regions"][0]["primary"])' "$WORK/dc/cluster.json")

TICKETS=${TICKETS:-100000}
python3 bench/setup.py "$WORK/dc/cluster.json" "$WORK" 2 "$TICKETS"
export TOKENS_FILE="$WORK/tokens"
mapfile -t EVENTS < "$WORK/events"

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB"
i=0
for connections in 64 256; do
    export EVENT_ID=${EVENTS[$i]}
    echo "reserve, $connections connections, $DURATION, fresh event with $TICKETS GA:"
    wrk -t2 -c"$connections" -d"$DURATION" -s bench/reserve.lua "$NODE" | grep RESULT
    i=$((i + 1))
done
for connections in 64 256; do
    export EVENT_ID=${EVENTS[0]}
    echo "availability reads, $connections connections, $DURATION:"
    wrk -t2 -c"$connections" -d"$DURATION" -s bench/availability.lua "$NODE" | grep RESULT
done

echo "audit (each must be 0):"
psql -qAt "$PRIMARY" <<'SQL'
SELECT 'tickets promised to two live bookings: ' || count(*) FROM (
  SELECT tid FROM bookings b, unnest(b.ticket_ids) tid
  WHERE (b.status = 'held' AND b.expires_at > now()) OR b.status = 'confirmed'
  GROUP BY tid HAVING count(*) > 1) d;
SELECT 'held tickets not matching live bookings: ' ||
  abs((SELECT count(*) FROM tickets WHERE status = 'held')
    - (SELECT coalesce(sum(quantity), 0) FROM bookings WHERE status = 'held'));
SELECT 'tiers where available+held+sold != created: ' || count(*) FROM tiers tr
  WHERE tr.ticket_count <> (SELECT count(*) FROM tickets t WHERE t.event_id = tr.event_id AND t.tier = tr.name);
SQL
