#!/usr/bin/env python3
"""Rewrites the header of every recorded trace from the scenario definitions (covers, deviations)
without recording again: for fixing a statement id or a deviation note."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import record  # noqa: E402

version = record.mosquitto_version()
for sc in record.scenario.ALL:
    path = os.path.join(record.TRACES, sc.name + ".trace")
    if not os.path.exists(path):
        continue
    with open(path) as f:
        lines = f.read().splitlines()
    old = [line for line in lines if line.startswith("# ")]
    broker = next((line[len("# broker: "):] for line in old if line.startswith("# broker: ")), version)
    body = [line for line in lines if not line.startswith("# ")]
    header = [f"# {k}: {v}" for k, v in sc.header(broker)]
    with open(path, "w") as f:
        f.write("\n".join(header + body) + "\n")
