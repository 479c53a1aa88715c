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
    booking = _load("booking")
    if booking:
        b, targets = booking, booking["targets"]
        workers = b["api_workers"]
        found += [
            {
                "figure": f"bookings/s, 64 clients, distinct slots (vs raw-asyncpg ceiling, "
                f"{workers} workers)",
                "value": b["bookings_per_s"]["64"],
                "reference": b["ceiling_transaction_per_s"],
                "ratio": b["ratio_64_to_transaction_ceiling"],
                "target": ">= 1",
                "met": targets["bookings_per_s_64_vs_transaction_ceiling"]["met"],
            },
            {
                "figure": "bookings/s, 64 clients (vs pgbench one-row INSERT tps, 64 clients)",
                "value": b["bookings_per_s"]["64"],
                "reference": b["pgbench_tps"]["64"],
                "ratio": b["ratio_64_to_pgbench_64"],
                "target": ">= 0.10",
                "met": targets["bookings_per_s_64_vs_pgbench_64"]["met"],
            },
            {
                "figure": "booking p99, ms, 64 clients",
                "value": b["p99_ms"]["64"],
                "target": targets["p99_ms_64"]["target"],
                "met": targets["p99_ms_64"]["met"],
            },
            {
                "figure": "hot slot (10,000 places) bookings/s, 64 clients (vs distinct slots)",
                "value": b["hot_bookings_per_s"],
                "reference": b["bookings_per_s"]["64"],
                "ratio": b["ratio_hot_to_distinct_64"],
                "target": ">= 0.5, 0 overbooked",
                "met": targets["hot_vs_distinct_64"]["met"] and b["overbooked"] == 0,
            },
            {
                "figure": "PaymentSucceeded to BookingConfirmed p50, ms, paced (vs one Kafka hop)",
                "value": b["payment_to_confirmed_p50_ms"],
                "reference": b["kafka_roundtrip_p50_ms"],
                "ratio": b["payment_to_confirmed_p50_in_kafka_roundtrips"],
                "target": "<= 3x",
                "met": targets["payment_to_confirmed_p50_ms"]["met"],
            },
            {
                "figure": "booking: largest RSS of a service process under load, MB",
                "value": targets["rss_mb_every_process"]["value"],
                "target": "< 200",
                "met": targets["rss_mb_every_process"]["met"],
            },
        ]
    e2e = _load("e2e")
    if e2e and "runs" in e2e:
        found += _e2e_rows(e2e)
    return found


def _e2e_rows(e2e: dict[str, Any]) -> list[Row]:
    """Per configuration: confirmed/s at the target rate (with its target) and at the highest
    offered rate, each against the offered rate; then the paced latencies against one hop."""
    found: list[Row] = []
    targets = e2e["targets"]
    top = max(e2e["rates"])
    for run in e2e["runs"]:
        rate, replicas = run["offered_per_s"], run["replicas"]
        target = next(
            (
                t
                for t in targets.values()
                if t.get("replicas") == replicas and t.get("offered_per_s") == rate
            ),
            None,
        )
        if target is None and rate != top:
            continue
        row: Row = {
            "figure": f"e2e: confirmed/s, {rate:,}/s offered ({run['sent_per_s']:,.0f}/s sent), "
            f"{replicas} worker(s)/service (vs offered)",
            "value": run["confirmed_per_s"],
            "reference": rate,
            "ratio": run["confirmed_ratio_to_offered"],
        }
        if target is not None:
            row["target"] = ">= 0.95, lag does not grow" + (" (it grew)" if run["lag_grew"] else "")
            row["met"] = target["met"]
        found.append(row)
    paced = targets["payment_to_confirmed_p50_ms"]
    found += [
        {
            "figure": "e2e: PaymentSucceeded to BookingConfirmed p50, ms, paced (vs one Kafka hop)",
            "value": e2e["payment_to_confirmed_p50_ms"],
            "reference": e2e["kafka_roundtrip_p50_ms"],
            "ratio": e2e["payment_to_confirmed_p50_in_kafka_roundtrips"],
            "target": "<= 3x",
            "met": paced["met"],
        },
        {
            "figure": "e2e: PaymentSucceeded to reminder scheduled p50, ms, paced (vs a Kafka hop)",
            "value": e2e["payment_to_reminder_p50_ms"],
            "reference": e2e["kafka_roundtrip_p50_ms"],
            "ratio": e2e["payment_to_reminder_p50_in_kafka_roundtrips"],
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
    missing = [n for n in ("timeslots", "reminders", "booking", "e2e") if _load(n) is None]
    if missing:
        print(f"(not run: {', '.join(missing)})")
    (RESULTS / "summary.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
