#!/usr/bin/env bash
# A/B of one workload through the router: two builds, alternated in one run on this machine,
# so that a change's effect is measured against the same noise.
#   bench/ab.sh WORKLOAD BEFORE_BIN_DIR AFTER_BIN_DIR [ROUNDS]
# WORKLOAD:
#   reads     cached availability reads of one event (the node answers from its cache),
#             USERS (128) users, closed loop;
#   reserves  hot-event reserves, USERS (256) users reserving 1 GA of a 200,000-ticket event.
# Each BIN_DIR holds a release `devcluster` and `loadgen`. Per round and build: a fresh
# one-region cluster, the load for DURATION (15s), then the cluster is stopped. loadgen reports
# the CPU per request of router, node, PostgreSQL, devcluster and itself over the steady window
# (from 1 s into the load to its end). Prints each run and the medians, with after/before
# ratios. Raw reports in $OUT (a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=$1 BEFORE=$2 AFTER=$3 ROUNDS=${4:-3}
DURATION=${DURATION:-15s}
BASE_PORT=${BASE_PORT:-18900}
case "$WORKLOAD" in
    reads)
        USERS=${USERS:-128}
        OP=availability
        LOAD=(--scenario browse --reads availability --clients us-east)
        ;;
    reserves)
        USERS=${USERS:-256}
        OP=reserve
        LOAD=(--scenario onsale --clients us-east --home us-east --tiers GA=200000
              --quantity 1 --outcomes abandon=1)
        ;;
    *) echo "usage: $0 reads|reserves BEFORE_BIN_DIR AFTER_BIN_DIR [ROUNDS]" >&2; exit 2 ;;
esac
OUT=${OUT:-$(mktemp -d "/tmp/ab-$WORKLOAD-XXXXXX")}
mkdir -p "$OUT"
chmod 755 "$OUT"
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true' EXIT

run() { # run LABEL BIN_DIR ROUND
    local label=$1 bin=$2 round=$3 dir="$OUT/$1-$3" limits=()
    # Rate limits raised a thousandfold (all load comes from 127.0.0.1), on builds that have them.
    if "$bin/devcluster" --help | grep -q -- --rate-limit-scale; then
        limits=(--rate-limit-scale 1000)
    fi
    "$bin/devcluster" --state-dir "$dir" --base-port "$BASE_PORT" --regions us-east "${limits[@]}" \
        > "$OUT/$label-$round.log" 2>&1 &
    PID=$!
    for _ in $(seq 600); do [ -s "$dir/cluster.json" ] && break; sleep 0.1; done
    [ -s "$dir/cluster.json" ] || { echo "devcluster did not start"; cat "$OUT/$label-$round.log"; exit 1; }
    "$bin/loadgen" run --cluster "$dir/cluster.json" "${LOAD[@]}" \
        --users "$USERS" --duration "$DURATION" --title "$label $round" \
        --json "$OUT/$label-$round.json" > "$OUT/$label-$round.loadgen.log" 2>&1 \
        || echo "($label $round: loadgen reported errors or a failed audit)"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

for round in $(seq "$ROUNDS"); do
    run before "$BEFORE" "$round"
    run after "$AFTER" "$round"
done

# Medians and ratios of loadgen's figures: requests/s, p50, p99, and CPU µs per request per
# process over each run's steady window (loadgen's `cpu`; a build whose loadgen predates it
# shows none).
python3 - "$OUT" "$ROUNDS" "$OP" <<'PY'
import json, statistics, sys
out, rounds, op = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PROCESSES = ("router", "node", "postgres", "devcluster", "loadgen")
rows = {}
for label in ("before", "after"):
    for r in range(1, rounds + 1):
        report = json.load(open(f"{out}/{label}-{r}.json"))
        row = next(x for x in report["rows"] if x["op"] == op)
        cpu = report.get("cpu") or {"kinds": [], "total": {}}
        per_request = {k["process"]: k["usPerRequest"] for k in cpu["kinds"]}
        rows.setdefault(label, []).append({
            "perSecond": row["perSecond"], "p50": row["p50Ms"], "p99": row["p99Ms"],
            "errors": row["errors"] + report["totals"]["errors"],
            "audit": report["audit"] is None or all(c["expected"] == c["found"] for c in report["audit"]["checks"]),
            **{f"{p}UsPerReq": per_request.get(p) for p in PROCESSES},
            "totalUsPerReq": cpu["total"].get("usPerRequest"),
        })
keys = ["perSecond", "p50", "p99"] + [f"{p}UsPerReq" for p in PROCESSES] + ["totalUsPerReq"]
labels = ["per s", "p50 ms", "p99 ms"] + [f"{p} µs/req" for p in PROCESSES] + ["total µs/req"]
cell = lambda v, f=".1f": f" {v:>16{f}}" if v is not None else f" {'-':>16}"
median = lambda vs: statistics.median(vs) if vs and None not in vs else None
print(f"{'run':<10}" + "".join(f" {k:>16}" for k in labels) + "    errors audit")
for label, runs in rows.items():
    for i, r in enumerate(runs, 1):
        print(f"{label + ' ' + str(i):<10}" + "".join(cell(r[k]) for k in keys) + f"    {r['errors']:>6} {'ok' if r['audit'] else 'FAILED'}")
print(f"{'median':<10}")
med = {label: {k: median([r[k] for r in runs]) for k in keys} for label, runs in rows.items()}
for label in ("before", "after"):
    print(f"{label:<10}" + "".join(cell(med[label][k]) for k in keys))
ratio = lambda a, b: a / b if a is not None and b else None
print(f"{'ratio':<10}" + "".join(cell(ratio(med['after'][k], med['before'][k]), ".3f") for k in keys))
PY
echo "raw reports: $OUT"
