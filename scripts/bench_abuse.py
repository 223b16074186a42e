#!/usr/bin/env python3
"""The abuse part of docs/benchmarks.md (between the `abuse:begin` and `abuse:end` markers): the
hostile scenario (`seckill-sim hostile --output`, target/bench/hostile-<run>.json) and the cost of
the proof of work (`seckill-sim pow --json`, target/bench/pow-<maxnumber>.json).

Usage: scripts/bench_abuse.py <bench dir> <benchmarks.md to update>
"""
import statistics
import sys

from bench_block import machine_and_commit, reports, rewrite

BEGIN, END = "<!-- abuse:begin -->", "<!-- abuse:end -->"
# The bounds `seckill-sim hostile` judges by (crates/flash-sim/src/hostile.rs).
SUCCESS_SLACK, P99_SLACK_MS = 0.01, 10.0


def median(values):
    return statistics.median(values) if values else None


def section(runs, pows, machine, commit):
    n = len(runs)
    names = [r["attack"] for r in runs[0]["rounds"]]
    lines = [
        BEGIN,
        "",
        f"Measured by `make bench` (group `abuse`: `seckill-sim hostile`), {n} runs, medians; "
        f"{machine}, commit {commit}. Honest buyers send "
        f"{runs[0]['rounds'][0]['honest']['offered_rate']:.0f} buys per second (open loop, "
        f"{runs[0]['rounds'][0]['honest']['connections']} connections, from 100 client addresses) for "
        f"{runs[0]['rounds'][0]['honest']['elapsed_secs']:.0f} s per round, first alone (clean), then under "
        "each attack from an address of its own, on the whole pipeline in one process (the "
        "attackers share the two cores). The per-address limit is 200 per second (burst 400). "
        f"The bound: honest success at most {SUCCESS_SLACK * 100:.0f} point below the clean round's, "
        f"honest p99 at most twice the clean round's plus {P99_SLACK_MS:.0f} ms.",
        "",
        "| round | honest success | honest p99 | bound on p99 | what the attacker got (last run) |",
        "| --- | --- | --- | --- | --- |",
    ]
    clean_p99 = median([r["rounds"][0]["p99_ms"] for r in runs])
    for i, name in enumerate(names):
        rounds = [r["rounds"][i] for r in runs if len(r["rounds"]) > i]
        success = median([x["success"] for x in rounds])
        p99 = median([x["p99_ms"] for x in rounds])
        runs_p99 = ", ".join(f"{x['p99_ms']:.1f}" for x in rounds)
        bound = "" if i == 0 else f"{2 * clean_p99 + P99_SLACK_MS:.1f} ms"
        lines.append(
            f"| {name} | {success * 100:.2f}% | {p99:.1f} ms (runs: {runs_p99}) | {bound} | "
            f"{rounds[-1]['attacker']} |"
        )
    if pows:
        lines += [
            "",
            "The proof of work, `seckill-sim pow` (one core, the code the gateway and a native client "
            "run; a browser solving in JavaScript or WebAssembly is several times slower):",
            "",
            "| maxnumber | client: solve, median (p90) | gateway: check, median | one solve costs |",
            "| --- | --- | --- | --- |",
        ]
        for p in sorted(pows, key=lambda p: p["max_number"]):
            lines.append(
                f"| {p['max_number']:,} | {p['solve_median_us'] / 1000:.2f} ms ({p['solve_p90_us'] / 1000:.2f} ms) | "
                f"{p['verify_median_us']:.2f} µs | {p['ratio']:,.0f} checks |"
            )
    lines += ["", "Raw reports: `target/bench/hostile-<run>.json` and `pow-<maxnumber>.json` of the run.", "", END]
    return "\n".join(lines)


def main():
    bench, target = sys.argv[1], sys.argv[2]
    runs = reports(bench, "hostile-*.json")
    if not runs:
        return
    pows = reports(bench, "pow-*.json")
    rewrite(target, BEGIN, END, section(runs, pows, *machine_and_commit(bench)))


if __name__ == "__main__":
    main()
