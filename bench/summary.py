"""The table ``make bench`` ends with: every headline figure of ``bench/results/*.json`` next to
the reference measured in the same run, their ratio, and the target where there is one.
Also written to ``bench/results/summary.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

Row = dict[str, Any]


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rows() -> list[Row]:
    found: list[Row] = []
    timeslots = _load("timeslots")
    if timeslots:
        t = timeslots
        found += [
            {
                "figure": "slot generation, slots/s (vs naive per-slot SELECT+INSERT)",
                "value": t["slots_per_s"],
                "reference": t["naive_slots_per_s"],
                "ratio": t["speedup_vs_naive"],
                "target": f">= {t['target_speedup_vs_naive']:g}x",
                "met": t["meets_naive_target"],
            },
            {
                "figure": "slot generation, slots/s (vs one raw INSERT ... SELECT)",
                "value": t["slots_per_s"],
                "reference": t["raw_sql_slots_per_s"],
                "ratio": t["ratio_vs_raw_sql"],
                "target": f">= {t['target_ratio_vs_raw_sql']:.2f}",
                "met": t["meets_raw_sql_target"],
            },
            {
                "figure": "availability search p99, ms (1M slots in the table)",
                "value": t["search_p99_ms"],
            },
        ]
    reminders = _load("reminders")
    if reminders:
        r, targets = reminders, reminders["targets"]
        found += [
            {
                "figure": "reminders: 10,000 due at once, delivered once each within (s)",
                "value": r["batch_s"],
                "target": f"{targets['batch_s']['target']}, 0 duplicates",
                "met": targets["batch_s"]["met"] and targets["duplicates"]["met"],
            },
            {
                "figure": "reminders: p99 lateness, 1,000 due at once, s (vs none ahead)",
                "value": r["lateness_p99_s_with_1000_due"],
                "reference": r["reference_lateness_p99_s_with_1000_due_no_dispatch_ahead"],
                "ratio": r["lateness_p99_ratio_to_reference"],
                "target": targets["lateness_p99_s_with_1000_due"]["target"],
                "met": targets["lateness_p99_s_with_1000_due"]["met"],
            },
        ]
    e2e = _load("e2e")
    if e2e:
        found += [
            {
                "figure": "bookings/s, HTTP request to confirmed (vs taken, unpaid)",
                "value": e2e["confirmed_per_s"],
                "reference": e2e["reference_created_per_s"],
                "ratio": e2e["confirmed_ratio_to_created"],
            },
            {
                "figure": "PaymentSucceeded to reminder scheduled p50, s, paced (vs one Kafka hop)",
                "value": e2e["payment_to_reminder_p50_s"],
                "reference": e2e["reference_kafka_hop_p50_s"],
                "ratio": e2e["payment_to_reminder_p50_in_kafka_hops"],
            },
        ]
    return found


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "met" if value else "MISSED"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    return str(value)


def main() -> None:
    table = rows()
    columns = ("figure", "value", "reference", "ratio", "target", "met")
    cells = [[_cell(row.get(c)) for c in columns] for row in table]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
    missing = [n for n in ("timeslots", "reminders", "e2e") if _load(n) is None]
    if missing:
        print(f"(not run: {', '.join(missing)})")
    (RESULTS / "summary.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
