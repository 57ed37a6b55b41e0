#!/usr/bin/env python3
"""Prepares a node benchmark: events with TICKETS (default 100,000) GA tickets each and 1,000
users' tokens.

usage: setup.py CLUSTER_JSON OUT_DIR EVENTS [TICKETS]
Writes OUT_DIR/events (one id a line) and OUT_DIR/tokens; prints ticket creation times.
"""
import json
import sys
import time
import urllib.request

cluster = json.load(open(sys.argv[1]))
out, events_wanted = sys.argv[2], int(sys.argv[3])
tickets = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
node = cluster["regions"][0]["node"] + "/api/v1"
region = cluster["regions"][0]["name"]
admin = cluster["adminToken"]


def post(path, body, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(node + path, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


events = []
for n in range(events_wanted):
    event = post("/events", {"name": f"Bench {n}", "venue": "Bench Arena",
                             "startsAt": "2031-01-01T20:00:00Z", "homeRegion": region,
                             "tiers": [{"name": "GA", "priceCents": 1000}]}, admin)
    started = time.monotonic()
    post("/tickets/create", {"eventId": event["id"], "tiers": {"GA": tickets}}, admin)
    print(f"{tickets:,} tickets created in {time.monotonic() - started:.2f} s (HTTP round trip included)")
    events.append(event["id"])
tokens = [post("/users", {"name": f"bench user {i}"})["token"] for i in range(1000)]
open(f"{out}/events", "w").write("\n".join(events) + "\n")
open(f"{out}/tokens", "w").write("\n".join(tokens) + "\n")
