#!/usr/bin/env python3
"""Turns bench/run.sh's RESULT lines into the table in docs/benchmarks.md and two SVG plots.

Usage: report.py RESULTS MARKDOWN PLOT_DIR. Only the standard library: the plots are written as SVG
by hand. The table replaces what stands between `<!-- bench:begin -->` and `<!-- bench:end -->`.
"""

import sys

BROKERS = ["cicada", "cicada-uring", "mosquitto", "rumqttd"]
COLOURS = {"cicada": "#2b6cb0", "cicada-uring": "#38a169", "mosquitto": "#d69e2e", "rumqttd": "#c53030"}

# (scenario, field, label, unit, target, higher is better)
ROWS = [
    ("fanout-qos0", "delivered_per_cpu_s", "QoS 0 fan-out 1→100", "deliveries / CPU-s", 2_500_000, True),
    ("pairs-qos1", "delivered_per_cpu_s", "QoS 1 pairs ×100 (persistent, fsync interval)", "deliveries / CPU-s", 400_000, True),
    ("fanin-qos1", "delivered_per_cpu_s", "QoS 1 fan-in 100→1 (persistent, fsync interval)", "deliveries / CPU-s", 400_000, True),
    ("latency-qos0", "p99_ms", "QoS 0 latency at 20k msg/s, p99", "ms", 1.0, False),
    ("latency-qos0", "p50_ms", "QoS 0 latency at 20k msg/s, p50", "ms", None, False),
    ("latency-qos1", "p99_ms", "QoS 1 latency at 20k msg/s, p99", "ms", 2.0, False),
    ("idle-19k", "bytes_per_idle_conn", "memory per idle connection (19,000)", "bytes", 1024, False),
    ("idle-19k", "connects_per_s", "connections opened one after another", "connects / s", None, True),
    ("connects", "connects_per_s", "connect + CONNACK + DISCONNECT, 50 loops", "connects / s", 20_000, True),
    ("flood", "rss_peak_kib", "peak RSS, 10 publishers flooding a stuck subscriber", "KiB", None, False),
    ("fanout-qos0", "delivered_per_s", "QoS 0 fan-out 1→100, wall clock", "deliveries / s", None, True),
    ("pairs-qos1", "delivered_per_s", "QoS 1 pairs ×100, wall clock", "deliveries / s", None, True),
]


def parse(path):
    results, header = {}, ""
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith("#"):
            header = line.lstrip("# ")
        if not line.startswith("RESULT "):
            continue
        fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        if "name" in fields and "broker" in fields:
            results.setdefault((fields["name"], fields["broker"]), {}).update(
                {k: v for k, v in fields.items() if k not in results.get((fields["name"], fields["broker"]), {})}
            )
    return header, results


def value(results, scenario, broker, field):
    try:
        v = float(results[(scenario, broker)][field])
    except (KeyError, ValueError):
        return None
    return None if v != v else v  # NaN


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "ms":
        return f"{v:.2f}"
    return f"{v:,.0f}"


def table(header, results):
    lines = [
        f"Measured by `bench/run.sh` ({header}). Ratios compare the better of the two cicada shells "
        "with each peer (above 1 is better for cicada, whichever way the metric points).",
        "",
        "| scenario | unit | cicada | cicada-uring | mosquitto | rumqttd | best cicada ÷ rumqttd | ÷ mosquitto | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, field, label, unit, target, higher in ROWS:
        vals = {b: value(results, scenario, b, field) for b in BROKERS}
        ours = [vals[b] for b in ("cicada", "cicada-uring") if vals[b] is not None]
        best = (max(ours) if higher else min(ours)) if ours else None

        def ratio(peer):
            p = vals[peer]
            if best is None or p is None or p == 0 or best == 0:
                return "—"
            return f"{(best / p) if higher else (p / best):.2f}"

        met = "—"
        if target is not None and best is not None:
            met = "yes" if (best >= target if higher else best <= target) else "**no**"
        cells = [fmt(vals[b], unit) for b in BROKERS]
        tgt = "—" if target is None else (("≥ " if higher else "≤ ") + fmt(target, unit))
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + f" | {ratio('rumqttd')} | {ratio('mosquitto')} | {tgt} | {met} |")
    return "\n".join(lines)


def bars(title, unit, groups, results, field, path, log_note=""):
    """A grouped bar chart: one group per (scenario, label), one bar per broker."""
    width, height, left, top, bottom = 760, 360, 70, 40, 70
    plot_w, plot_h = width - left - 20, height - top - bottom
    values = [value(results, s, b, field) or 0 for s, _ in groups for b in BROKERS]
    peak = max(values + [1e-9])
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / len(BROKERS)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="14" y="{top + plot_h / 2}" transform="rotate(-90 14 {top + plot_h / 2})" text-anchor="middle">{unit}{log_note}</text>',
    ]
    for tick in range(5):
        y = top + plot_h - plot_h * tick / 4
        v = peak * tick / 4
        label = f"{v / 1e6:.1f}M" if peak >= 1e6 else (f"{v / 1e3:.0f}k" if peak >= 1e4 else f"{v:.2f}")
        out.append(f'<line x1="{left - 4}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{label}</text>')
    for gi, (scenario, label) in enumerate(groups):
        gx = left + gi * group_w + group_w * 0.1
        for bi, broker in enumerate(BROKERS):
            v = value(results, scenario, broker, field)
            h = 0 if v is None else plot_h * v / peak
            x = gx + bi * bar_w
            out.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" fill="{COLOURS[broker]}"/>')
            if v is None:
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - 4}" text-anchor="middle" font-size="10">n/a</text>')
        out.append(f'<text x="{gx + group_w * 0.4:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{label}</text>')
    for i, broker in enumerate(BROKERS):
        x = left + i * 150
        out.append(f'<rect x="{x}" y="{height - 24}" width="12" height="12" fill="{COLOURS[broker]}"/>')
        out.append(f'<text x="{x + 16}" y="{height - 14}">{broker}</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def main():
    results_path, markdown_path, plot_dir = sys.argv[1:4]
    header, results = parse(results_path)
    doc = open(markdown_path, encoding="utf-8").read()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin not in doc or end not in doc:
        sys.exit(f"{markdown_path} has no {begin} ... {end} section")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc = head + begin + "\n" + table(header, results) + "\n" + end + tail
    with open(markdown_path, "w", encoding="utf-8") as f:
        f.write(doc)
    bars(
        "Throughput per broker CPU-second (higher is better)",
        "deliveries / CPU-s",
        [("fanout-qos0", "QoS 0 fan-out 1→100"), ("pairs-qos1", "QoS 1 pairs ×100"), ("fanin-qos1", "QoS 1 fan-in 100→1")],
        results,
        "delivered_per_cpu_s",
        f"{plot_dir}/throughput.svg",
    )
    bars(
        "p99 latency at 20k msg/s (lower is better)",
        "ms",
        [("latency-qos0", "QoS 0"), ("latency-qos1", "QoS 1")],
        results,
        "p99_ms",
        f"{plot_dir}/latency.svg",
    )
    print(table(header, results))


if __name__ == "__main__":
    main()
