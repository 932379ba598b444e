#!/usr/bin/env python3
"""Prints, for each scenario file written by scripts/benchmarks.sh, the key figures of
every run and their median, as Markdown tables (the source of BENCHMARKS.md)."""
import json
import statistics
import sys
from pathlib import Path


def get(d, path):
    for k in path.split("."):
        if isinstance(d, list):
            d = d[int(k)]
        elif isinstance(d, dict) and k in d:
            d = d[k]
        else:
            return None
    return d


def last_passing(d):
    """The fan-out step with the highest delivered rate that passed (the ceiling)."""
    steps = [s for s in d.get("steps", []) if "error" not in s]
    best = d.get("ceiling_deliveries_per_s")
    for s in steps:
        if s.get("deliveries_per_s") == best:
            return s
    return {}


FIELDS = {
    "connect": [
        "established", "connects_per_s",
        "connect_to_welcome.p50_us", "connect_to_welcome.p99_us",
        "connect_to_confirm.p50_us", "connect_to_confirm.p99_us",
        "server_rss_start_kb", "server_rss_end_kb", "server_rss_per_conn_bytes",
        "connect_phase.server_cpu_us_per_connect", "connect_phase.gen_cpu_us_per_connect",
        "hold_phase.server_cores", "held_alive_at_end",
    ],
    "broadcast": [
        "subscribers_ready", "delivered", "lost", "duplicates",
        "latency.p50_us", "latency.p90_us", "latency.p99_us", "latency.max_us",
        "time_to_all.p50_us", "time_to_all.p90_us", "time_to_all.p99_us", "time_to_all.max_us",
        "deliveries_per_s", "cpu.server_cpu_us_per_delivery", "cpu.gen_cpu_us_per_delivery",
        "cpu.server_cores", "cpu.gen_cores",
    ],
    "fanout-ceiling": [
        "ceiling_deliveries_per_s", "ceiling_rate_per_s",
        "best.latency.p50_us", "best.latency.p99_us", "best.time_to_all.p99_us",
        "best.cpu.server_cores", "best.cpu.gen_cores",
        "best.cpu.server_cpu_us_per_delivery", "best.cpu.gen_cpu_us_per_delivery",
    ],
    "presence-churn": [
        "joins_per_s", "expected_events", "lost", "duplicates",
        "join_to_user_joined.p50_us", "join_to_user_joined.p90_us",
        "join_to_user_joined.p99_us", "join_to_user_joined.max_us",
        "leave_to_user_left.p50_us", "leave_to_user_left.p99_us",
        "cpu.server_cpu_us_per_frame", "cpu.gen_cpu_us_per_frame",
        "cpu.server_cores", "cpu.gen_cores",
    ],
}


def main(out):
    for f in sorted(Path(out).glob("*.jsonl")):
        runs = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
        if not runs:
            continue
        for r in runs:
            if r.get("mode") == "fanout-ceiling":
                r["best"] = last_passing(r)
        mode = runs[0].get("mode")
        print(f"\n### {f.stem}\n")
        print("| figure | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | median |")
        print("|---|" + "---|" * (len(runs) + 1))
        for field in FIELDS.get(mode, []):
            vals = [get(r, field) for r in runs]
            nums = [v for v in vals if isinstance(v, (int, float))]
            med = statistics.median(nums) if nums else None
            cells = ["" if v is None else str(v) for v in vals]
            print(f"| {field} | " + " | ".join(cells) + f" | {'' if med is None else round(med, 3)} |")
        other = {k: [r.get(k) for r in runs] for k in ("stopped_by", "failures", "subscribe_failures",
                                                        "setup_failures", "churner_failures", "truncated", "error")
                 if any(k in r for r in runs)}
        for k, v in other.items():
            print(f"\n{k}: {v}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-results")
