#!/usr/bin/env python3
"""Cross-region latency matrix on a running devcluster, through each region's router.

usage: latency_matrix.py CLUSTER_JSON [SAMPLES]
For every (client region, home region): SAMPLES reserves (1 GA, sequential, keep-alive) and
3 x SAMPLES event reads, p50/p95 beside the simulated round trip; then each node's replica lag
per shard. Prints a Markdown table.
"""
import http.client
import json
import statistics
import sys
import time
from urllib.parse import urlparse

cluster = json.load(open(sys.argv[1]))
samples = int(sys.argv[2]) if len(sys.argv) > 2 else 40
regions = [r["name"] for r in cluster["regions"]]
router = {r["name"]: urlparse(r["router"]) for r in cluster["regions"]}
node = {r["name"]: urlparse(r["node"]) for r in cluster["regions"]}
events = {e["homeRegion"]: e["id"] for e in cluster["demo"]["events"]}
tokens = {}
for u in cluster["demo"]["users"]:
    tokens.setdefault(u["homeRegion"], u["token"])
RTT = {frozenset(["us-east", "eu-west"]): 76, frozenset(["us-east", "ap-southeast"]): 222,
       frozenset(["eu-west", "ap-southeast"]): 160}


def rtt(a, b):
    return 0 if a == b else RTT.get(frozenset([a, b]), 100)


def connect(url):
    return http.client.HTTPConnection(url.hostname, url.port, timeout=10)


def timed(conn, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    started = time.perf_counter()
    conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = conn.getresponse()
    response.read()
    return (time.perf_counter() - started) * 1000, response.status


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


rows = []
for client in regions:
    conn = connect(router[client])
    timed(conn, "GET", "/healthz")  # open the keep-alive connection
    for home in regions:
        body = {"eventId": events[home], "tickets": [{"tier": "GA", "quantity": 1}]}
        # Warm the router's pool to the home region (a real router has traffic already).
        timed(conn, "POST", "/api/v1/booking/reserve", body, tokens[client])
        writes, reads, errors = [], [], 0
        for _ in range(samples):
            ms, status = timed(conn, "POST", "/api/v1/booking/reserve", body, tokens[client])
            writes.append(ms)
            errors += status != 201
        for _ in range(3 * samples):
            ms, status = timed(conn, "GET", f"/api/v1/events/{events[home]}")
            reads.append(ms)
            errors += status != 200
        rows.append((client, home, rtt(client, home), pct(writes, 50), pct(writes, 95),
                     pct(reads, 50), pct(reads, 95), errors))

print(f"| client region | home region | simulated RTT | reserve p50 | reserve p95 | p50 / RTT "
      f"| event read p50 | event read p95 | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for client, home, r, w50, w95, r50, r95, errors in rows:
    ratio = f"{w50 / r:.2f}" if r else "—"
    print(f"| {client} | {home} | {r} ms | {w50:.1f} ms | {w95:.1f} ms | {ratio} "
          f"| {r50:.2f} ms | {r95:.2f} ms | {errors} |")

print()
print("| region (replica holder) | shard | replay lag bound (ms) | WAL bytes behind |")
print("|---|---|---|---|")
for region in regions:
    conn = connect(node[region])
    conn.request("GET", "/api/v1/cluster")
    view = json.loads(conn.getresponse().read())
    for shard in view["shards"]:
        print(f"| {region} | {shard['shard']} | {shard['lagMs']} | {shard['lagBytes']} |")
