#!/usr/bin/env python3
"""The waiting room's part of docs/benchmarks.md (between the `room:begin` and `room:end`
markers), from the `seckill-sim room --compare --output` files of `make bench` (target/bench/
room-<run>.json, each a list of two reports: load shedding alone, then the waiting room).

Usage: scripts/bench_room.py <bench dir> <benchmarks.md to update>
"""
import statistics
import sys

from bench_block import machine_and_commit, reports, rewrite

BEGIN, END = "<!-- room:begin -->", "<!-- room:end -->"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2, unit=""):
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def section(runs, orders, machine, commit):
    shedding = [run[0] for run in runs]
    room = [run[1] for run in runs]
    n = len(runs)
    ratio = [r["poll_cost"][0] / r["poll_cost"][1] if r.get("poll_cost") else None for r in room]
    polls = [r["poll_cost"][0] if r.get("poll_cost") else None for r in room]
    healthz = [r["poll_cost"][1] if r.get("poll_cost") else None for r in room]
    first = room[0]
    lines = [
        BEGIN,
        "",
        f"Measured by `make bench` (group `room`: `seckill-sim room --compare`), {n} runs, medians; "
        f"{machine}, commit {commit}. A crowd of {first['buyers'][0]} polite buyers and "
        f"{first['buyers'][1]} greedy clients (2 connections each, no pause) at a sale of "
        f"{sum(first['units'])} units, on the whole pipeline in one process with "
        "`gateway.max_in_flight` 32: first with load shedding alone, then behind a "
        "`random_at_open` waiting room admitting 400 buyers per second.",
        "",
        "| figure | shedding alone | waiting room | goal |",
        "| --- | --- | --- | --- |",
        f"| fairness: greedy share of units / share of buyers | {fmt(median([r['fairness'] for r in shedding]))} "
        f"(runs: {', '.join(fmt(r['fairness']) for r in shedding)}) | {fmt(median([r['fairness'] for r in room]))} "
        f"(runs: {', '.join(fmt(r['fairness']) for r in room)}) | at most 1.1 |",
        f"| 503 answers | {fmt(median([r['shed'] for r in shedding]), 0)} | "
        f"{fmt(median([r['shed'] for r in room]), 0)} | |",
        f"| 503 answers to buyers holding a ticket | | {fmt(median([r['admitted_shed'] for r in room]), 0)} | 0 |",
        f"| sold-out news: last unit to last waiting buyer told | | "
        f"{fmt(median([r['sold_out_news_ms'] for r in room]), 0, ' ms')} "
        f"(poll interval {fmt(median([r['poll_interval_ms'] for r in room]), 0, ' ms')}) | at most one poll interval |",
        f"| order (a FIFO room, 500 buyers arriving 2 ms apart, 200 admitted per second): rank correlation of join and admission | | "
        f"{fmt(median([o[0]['rank_correlation'] for o in orders]), 4)} (runs: {', '.join(fmt(o[0]['rank_correlation'], 4) for o in orders)}) | at least 0.99 |",
        f"| wait, median | | {fmt(median([r['wait_secs'] for r in room]), 2, ' s')} | |",
        f"| estimate error, median | | {fmt(median([r['estimate_error_secs'] for r in room]), 2, ' s')} | |",
        f"| polling cost: poll answers/s vs `/healthz`/s, same generator | | "
        f"{fmt(median(polls), 0)} vs {fmt(median(healthz), 0)} ({fmt(median(ratio))}) | at least 0.8 |",
        "",
        "Raw reports: `target/bench/room-<run>.json` of the run.",
        "",
        END,
    ]
    return "\n".join(lines)


def main():
    bench, target = sys.argv[1], sys.argv[2]
    runs = reports(bench, "room-*.json")
    if not runs:
        return
    orders = reports(bench, "order-*.json")
    rewrite(target, BEGIN, END, section(runs, orders, *machine_and_commit(bench)))


if __name__ == "__main__":
    main()
