#!/usr/bin/env python3
"""CPU seconds used so far by each part of a running devcluster, for CPU per request.

usage: bench/cpu.py DEVCLUSTER_PID [LOADGEN_PID]
Prints JSON {"node": s, "router": s, "postgres": s, "devcluster": s, "loadgen": s}: user+system
time of every process in each part's tree (a reaped child's time counts in its parent's
cutime/cstime). "devcluster" is the supervisor itself, which also runs the WAN links and DNS.
"""
import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime 15, cutime 16, cstime 17.
    ppid = int(fields[1])
    cpu = sum(int(x) for x in fields[11:15]) / TICK
    return ppid, cpu


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def main():
    root = int(sys.argv[1])
    loadgen = int(sys.argv[2]) if len(sys.argv) > 2 else None
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                procs[int(name)] = stat(int(name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    children = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)

    def tree(pid):
        total, stack = 0.0, [pid]
        while stack:
            p = stack.pop()
            total += procs.get(p, (0, 0.0))[1]
            stack.extend(children.get(p, []))
        return total

    parts = {"node": 0.0, "router": 0.0, "postgres": 0.0}
    for child in children.get(root, []):
        try:
            line = cmdline(child)
        except FileNotFoundError:
            continue
        kind = "node" if "run-node" in line else "router" if "run-router" in line else "postgres"
        parts[kind] += tree(child)
    parts["devcluster"] = procs.get(root, (0, 0.0))[1]
    if loadgen:
        parts["loadgen"] = tree(loadgen)
    print(json.dumps(parts))


main()
