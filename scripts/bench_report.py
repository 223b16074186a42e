#!/usr/bin/env python3
"""The report of `make bench` (scripts/bench.sh): reads what the runs left in target/bench and
writes the generated part of docs/benchmarks.md (between the `bench:begin` and `bench:end`
markers) and an SVG chart. No dependencies beyond the standard library.

Usage:
  bench_report.py median-throughput OUT NAME   the median answers/s of the runs OUT/NAME-<n>.json
  bench_report.py write OUT MARKDOWN SVG       the report
  bench_report.py fetch URL                    the text at URL (a service's /metrics)
  bench_report.py wait-written METRICS_URL     waits until the worker has written orders and
                                               then 2 s without writing any
  bench_report.py drain-rate DATABASE_URL SINCE
                                               the orders of the worker's batches after SINCE,
                                               but the last, and the seconds from the first
                                               batch to the last; orders/s
  bench_report.py thread-ticks PID             CPU ticks per thread group (http, kafka, ...)
  bench_report.py pgbench-script BATCH         the worker's transaction for pgbench
  bench_report.py worker-batches METRICS_URL   orders in batches, seconds in them, batches
  bench_report.py wait-drained METRICS_URL     waits (up to 300 s) until the worker's lag on the
                                               orders topic is 0; prints the seconds it took
"""
import csv
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

# The bound on the gateway's p99 for the buy requests it answers under three times the load it
# sustains (docs/benchmarks.md, "Under overload").
OVERLOAD_P99_MS = 256


def runs(out, name, ext="json"):
    """The files of the runs of one scenario, in run order."""
    files = glob.glob(os.path.join(out, f"{name}-*.{ext}"))
    pattern = re.compile(re.escape(name) + r"-(\d+)\." + ext + "$")
    numbered = [(int(m.group(1)), f) for f in files if (m := pattern.search(f))]
    return [f for _, f in sorted(numbered)]


def load_runs(out, name):
    reports = []
    for path in runs(out, name):
        with open(path) as f:
            report = json.load(f)
        cpu_path = path[: -len(".json")] + ".cpu"
        if os.path.exists(cpu_path):
            stack, redis, hz = (int(x) for x in open(cpu_path).read().split())
            report["cpu_us"] = 1e6 * stack / hz / max(report["requests"], 1)
            report["redis_us"] = 1e6 * redis / hz / max(report["requests"], 1)
        threads_path = path[: -len(".json")] + ".threads"
        if os.path.exists(threads_path):
            before, after = (json.loads(line) for line in open(threads_path))
            report["threads_us"] = {
                group: 1e6 * (after.get(group, 0) - before.get(group, 0)) / hz / max(report["requests"], 1)
                for group in after
            }
        metrics_before = path[: -len(".json")] + ".metrics0"
        if os.path.exists(metrics_before):
            metrics_after = path[: -len(".json")] + ".metrics1"
            report["gateway"] = gateway_latency(metrics_before, metrics_after)
            report["group"] = reserve_group(metrics_before, metrics_after)
        reports.append(report)
    return reports


BUY_ROUTE = 'route="/v1/sales/{sku_id}/orders"'


def gateway_latency(before, after):
    """The buy requests the gateway answered between two readings of its /metrics, and their
    latency as it measured them (from dispatching the request to its answer), as quantiles:
    the upper edge of the histogram bucket each quantile falls in, in ms."""
    def buckets(path):
        counts = {}
        for line in open(path):
            if line.startswith("seckill_http_request_duration_seconds_bucket{") and BUY_ROUTE in line:
                le = re.search(r'le="([^"]+)"', line).group(1)
                counts[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        return counts

    start, end = buckets(before), buckets(after)
    cumulative = sorted((le, end[le] - start.get(le, 0)) for le in end)
    total = cumulative[-1][1] if cumulative else 0
    def quantile(q):
        for le, count in cumulative:
            if count >= q * total:
                return 1000 * le
        return float("nan")
    return {"count": total, "p50": quantile(0.5), "p99": quantile(0.99), "p999": quantile(0.999)}


def reserve_group(before, after):
    """The calls of the reserve script the gateway made between two readings of its /metrics,
    and the orders they carried (group reservation: their ratio is the mean group)."""
    def counters(path):
        values = {}
        for line in open(path):
            for name in ("seckill_reserve_calls_total", "seckill_reserve_orders_total"):
                if line.startswith(name + " "):
                    values[name] = float(line.rsplit(" ", 1)[1])
        return values

    start, end = counters(before), counters(after)
    calls = end.get("seckill_reserve_calls_total", 0) - start.get("seckill_reserve_calls_total", 0)
    orders = end.get("seckill_reserve_orders_total", 0) - start.get("seckill_reserve_orders_total", 0)
    return {"calls": calls, "orders": orders}


def ratio_of(value, ceiling):
    """value / ceiling, or NaN when the ceiling is missing or zero."""
    return value / ceiling if ceiling and ceiling == ceiling else float("nan")


def median(values):
    return statistics.median(values) if values else float("nan")


def spread(values):
    return f"{min(values):,.0f}–{max(values):,.0f}" if values else "–"


def reserve_ceiling(out):
    figures = []
    for path in runs(out, "reserve_ceiling", "csv"):
        # "EVALSHA ...","rps","avg","min","p50","p95","p99","max" (the command has commas)
        fields = next(csv.reader(open(path)))[-7:]
        calls = float(fields[0])
        cpu = open(path[: -len(".csv")] + ".cpu").read().split()
        figures.append(
            {
                "calls": calls,
                "p50": float(fields[3]),
                "p99": float(fields[5]),
                "redis_us": 1e6 * int(cpu[0]) / int(cpu[2]) / int(cpu[1]),
            }
        )
    return figures


def round_trips(out, path):
    """Top-level Redis commands (not those a script ran) that name the run's SKU, per answer."""
    report_path = os.path.join(out, f"monitor-{path}.json")
    monitor_path = os.path.join(out, f"monitor-{path}.txt")
    if not (os.path.exists(report_path) and os.path.exists(monitor_path)):
        return None
    report = json.load(open(report_path))
    tag = "{" + report["skus"][0] + "}"
    commands = {}
    total = 0
    for line in open(monitor_path, errors="replace"):
        if " lua]" in line or tag not in line:
            continue
        parts = line.split('"')
        name = parts[1] if len(parts) > 1 else "?"
        if name == "EVALSHA" and len(parts) > 5:
            name = f"EVALSHA ({parts[5]} keys)"
        commands[name] = commands.get(name, 0) + 1
        total += 1
    outcome = "accepted" if path == "accept" else "sold_out"
    answers = report["outcomes"].get(outcome, {}).get("count", 0)
    return {
        "answers": answers,
        "requests": report["requests"],
        "total": total,
        "per_answer": total / answers if answers else float("nan"),
        "commands": commands,
    }


def demo_runs(out):
    figures = []
    for path in runs(out, "demo", "txt"):
        text = open(path).read()
        start = text.rfind("\n{")
        if start < 0:
            figures.append(None)
            continue
        verdict, _ = json.JSONDecoder().raw_decode(text, start + 1)
        holds = all(
            verdict[k] == 0
            for k in ("oversold", "duplicates", "lost", "conservation_gap", "bad_input_violations")
        ) and verdict.get("unfinished_reservations", 0) == 0
        figures.append(
            {
                "throughput": verdict["throughput"],
                "crowd_secs": verdict["crowd_secs"],
                "drain_secs": verdict["drain_secs"],
                "accepted": verdict["accepted_orders"],
                "written": verdict["written_orders"],
                "holds": holds,
            }
        )
    return figures


def verdict(ok):
    return "met" if ok else "**not met**"


def write(out, markdown, svg):
    machine = open(os.path.join(out, "machine.txt")).read().strip()
    commit = open(os.path.join(out, "commit.txt")).read().strip()
    scenarios = {
        name: load_runs(out, name)
        for name in ("healthz", "sold_out", "accept", "accept50", "accept_half", "overload")
    }
    ceiling = reserve_ceiling(out)
    t = {name: [r["throughput"] for r in reports] for name, reports in scenarios.items()}
    healthz = median(t["healthz"])
    reserve = median([c["calls"] for c in ceiling])
    lines = [
        BEGIN,
        "",
        f"Generated by `make bench` (scripts/bench.sh, scripts/bench_report.py) at commit `{commit}`.",
        f"Machine: {machine}. The generator, the stack process (gateway, worker, replayer, the",
        "embedded broker), Redis and PostgreSQL all share these cores: throughput moves by 10–30%",
        "between runs and sessions, so every ratio below compares figures of the same run, and the",
        "CPU time per request (from `/proc`, steadier than throughput) is given beside it.",
        "",
        "### Closed loop: throughput against the ceilings",
        "",
        "| scenario | runs | median answers/s | spread | p50 ms | p99 ms | ceiling (same run) | ratio | target | stack CPU µs/req | Redis CPU µs/req |",
        "| --- | ---: | ---: | --- | ---: | ---: | --- | ---: | --- | ---: | ---: |",
    ]

    def row(label, name, ceiling_label, ceiling_value, target):
        reports = scenarios[name]
        if not reports:
            return
        m = median(t[name])
        ratio = m / ceiling_value if ceiling_value else float("nan")
        target_text = "–" if target is None else f"≥ {target:.0%}: {verdict(ratio >= target)}"
        lines.append(
            f"| {label} | {len(reports)} | {m:,.0f} | {spread(t[name])} "
            f"| {median([r['all']['p50'] for r in reports]):.2f} "
            f"| {median([r['all']['p99'] for r in reports]):.2f} "
            f"| {ceiling_label} {ceiling_value:,.0f}/s | {ratio:.0%} | {target_text} "
            f"| {median([r.get('cpu_us', float('nan')) for r in reports]):.1f} "
            f"| {median([r.get('redis_us', float('nan')) for r in reports]):.1f} |"
        )

    row("`GET /healthz` (trivial handler)", "healthz", "itself", healthz, None)
    row("sold-out path (stock 0)", "sold_out", "`/healthz`", healthz, 0.8)
    row("accept path, 1 hot SKU", "accept", "reserve script", reserve, 0.5)
    row("accept path, 50 SKUs", "accept50", "reserve script", reserve, 0.5)
    groups = ("http", "kafka", "runtime", "database", "other")
    lines += [
        "",
        "Where the stack process's CPU went, µs per request, by thread (median of the runs;",
        "`http` = the gateway's HTTP workers, `kafka` = librdkafka's threads with the in-process",
        "broker, `runtime` = the async runtime of the worker, the replayer, the Redis connection",
        "and the marks, `database` = sqlx):",
        "",
        "| scenario | " + " | ".join(groups) + " |",
        "| --- |" + " ---: |" * len(groups),
    ]
    for label, name in (("`GET /healthz`", "healthz"), ("sold-out path", "sold_out"),
                        ("accept, 1 SKU", "accept"), ("accept, 50 SKUs", "accept50")):
        reports = [r for r in scenarios[name] if "threads_us" in r]
        if reports:
            cells = [median([r["threads_us"].get(g, 0.0) for r in reports]) for g in groups]
            lines.append(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    grouped = [(label, [r["group"] for r in scenarios[name] if r.get("group", {}).get("calls")])
               for label, name in (("accept, 1 SKU", "accept"), ("accept, 50 SKUs", "accept50"))]
    if any(g for _, g in grouped):
        lines += [
            "",
            "Group reservation: the calls of the reserve script and the orders they carried "
            "(`seckill_reserve_calls_total`, `seckill_reserve_orders_total` of the gateway; "
            "medians of the runs):",
            "",
            "| scenario | calls | orders | orders per call |",
            "| --- | ---: | ---: | ---: |",
        ]
        for label, groups_of in grouped:
            if groups_of:
                calls = median([g["calls"] for g in groups_of])
                orders = median([g["orders"] for g in groups_of])
                per = median([g["orders"] / g["calls"] for g in groups_of])
                lines.append(f"| {label} | {calls:,.0f} | {orders:,.0f} | {per:.1f} |")
    lines += [
        "",
        "Ceiling of the accept path: the real reserve script (`seckill-sim script reserve`) under",
        "`redis-benchmark -n 200000 -c 50 -r 1000000000 --csv EVALSHA …` with random buyers, against",
        "the same Redis, in the same run:",
        "",
        "| run | calls/s | p50 ms | p99 ms | Redis CPU µs/call |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, c in enumerate(ceiling, 1):
        lines.append(f"| {i} | {c['calls']:,.0f} | {c['p50']:.3f} | {c['p99']:.3f} | {c['redis_us']:.1f} |")
    if ceiling:
        lines.append(f"| median | {reserve:,.0f} | | | {median([c['redis_us'] for c in ceiling]):.1f} |")

    half = scenarios["accept_half"]
    if half:
        p99 = median([r["all"]["p99"] for r in half])
        lines += [
            "",
            "### Open loop: the accept path at half of its closed-loop median",
            "",
            "Requests are due at a constant rate; latency counts from the due time (queueing is not hidden).",
            "",
            "| runs | offered/s | answered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | target p99 ≤ 10 ms |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            f"| {len(half)} | {median([r['offered_rate'] for r in half]):,.0f} "
            f"| {median([r['throughput'] for r in half]):,.0f} "
            f"| {median([r['all']['p50'] for r in half]):.2f} "
            f"| {median([r['all']['p90'] for r in half]):.2f} | {p99:.2f} "
            f"| {median([r['all']['p999'] for r in half]):.2f} "
            f"| {median([r['all']['max'] for r in half]):.2f} | {verdict(p99 <= 10)} |",
        ]
    over = scenarios["overload"]
    if over:
        r = over[0]
        lines += [
            "",
            "### Overload: open loop at three times the accept path's median, 1,024 connections",
            "",
            f"Offered {r['offered_rate']:,.0f}/s; answered {r['throughput']:,.0f}/s. The gateway's",
            f"`gateway.max_in_flight` is {os.environ.get('SECKILL__GATEWAY__MAX_IN_FLIGHT', '256')} and `gateway.max_loop_lag_ms` 50 in this run.",
            "Latency from the due time, per outcome (on two shared cores the generator's own queueing",
            "is part of it: see What limits each figure):",
            "",
            "| outcome | answers | p50 ms | p99 ms | p99.9 ms | max ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, p in sorted(r["outcomes"].items()):
            lines.append(
                f"| {name} | {p['count']:,} | {p['p50']:.2f} | {p['p99']:.2f} | {p['p999']:.2f} | {p['max']:.2f} |"
            )
        g = r.get("gateway")
        if g and g["count"]:
            lines += [
                "",
                f"The gateway's own view of the same run (`seckill_http_request_duration_seconds` of the buy",
                f"route, from dispatching a request to its answer; each figure is the upper edge of the",
                f"histogram bucket it falls in): {g['count']:,.0f} buy requests answered, p50 ≤ {g['p50']:g} ms,",
                f"p99 ≤ {g['p99']:g} ms, p99.9 ≤ {g['p999']:g} ms. Bound: p99 ≤ {OVERLOAD_P99_MS} ms: "
                f"{verdict(g['p99'] <= OVERLOAD_P99_MS)}.",
            ]
    lines += [
        "",
        "### Redis round trips (`redis-cli MONITOR`, 200 sequential requests, one connection)",
        "",
        "Top-level commands naming the sale's keys (not the commands a script runs inside Redis),",
        "from the first request until 3 s after the last answer: the gateway's calls, the",
        "acknowledgement marks, the worker's claims and outbox marks, and any sweep of the sale.",
        "",
        "| path | answers | commands | per answer | target | commands seen |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for path, target in (("accept", 1.2), ("sold_out", 0.25)):
        rt = round_trips(out, path)
        if rt is None:
            continue
        seen = ", ".join(f"{k} ×{v}" for k, v in sorted(rt["commands"].items()))
        lines.append(
            f"| {path.replace('_', ' ')} | {rt['answers']} | {rt['total']} | {rt['per_answer']:.3f} "
            f"| ≤ {target}: {verdict(rt['per_answer'] <= target)} | {seen} |"
        )
    drains = []
    for path in runs(out, "drain", "rate"):
        run = re.search(r"drain-(\d+)\.rate$", path).group(1)
        orders, secs, rate = (float(x) for x in open(path).read().split())
        pgbench = open(os.path.join(out, f"pgbench-{run}.txt")).read().splitlines()
        tps_line = [l for l in pgbench if l.startswith("tps")]
        batch = int(open(os.path.join(out, f"pgbench-{run}.batch")).read())
        tps = float(tps_line[0].split()[2]) if tps_line else float("nan")
        done = [l for l in pgbench if "actually processed" in l]
        transactions = int(done[0].split(":")[1].split("/")[0]) if done else 0
        batches_written = orders / batch + 1
        cpu = {}
        cpu_path = os.path.join(out, f"drain-{run}.cpu")
        if os.path.exists(cpu_path):
            pg, redis, worker, hz = (int(x) for x in open(cpu_path).read().split())
            cpu = {k: 1000 * v / hz / batches_written for k, v in (("pg", pg), ("redis", redis), ("worker", worker))}
        pgbench_cpu_path = os.path.join(out, f"pgbench-{run}.cpu")
        if os.path.exists(pgbench_cpu_path) and transactions:
            pg, hz = (int(x) for x in open(pgbench_cpu_path).read().split())
            cpu["pgbench_pg"] = 1000 * pg / hz / transactions
        drains.append(
            {
                "orders": orders,
                "secs": secs,
                "rate": rate,
                "batch": batch,
                "batch_ms": 1000 * batch / rate if rate else float("nan"),
                "ceiling": tps * batch,
                "cpu": cpu,
                "ceiling_ms": 1000 / tps if tps else float("nan"),
            }
        )
    if drains:
        lines += [
            "",
            "### Worker: one hot SKU, PostgreSQL",
            "",
            "A stack without its worker queues the orders (`seckill-sim stack --without-worker`, then",
            "`seckill-sim load --create-sales 1 --requests N`); `seckill-order-worker` started on its own",
            "drains them. Rate: the orders of every batch but the last, over the time from the first",
            "batch's start to the last one's (every row of a batch has the batch's `created_at`); ms per",
            "batch is the batch size at that rate. Ceiling: pgbench running the worker's transaction",
            "(the read of the payment window, the insert from one array per column, the guarded stock",
            "update, as `log_statement` shows them) at the worker's mean batch size, one client, in the",
            "same run (`scripts/bench_report.py pgbench-script`).",
            "",
            "| run | orders | s | orders/s | batch | ms per batch (worker) | pgbench orders/s | ms per batch (pgbench) | ratio | target ≥ 90% |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for i, d in enumerate(drains, 1):
            ratio = ratio_of(d["rate"], d["ceiling"])
            lines.append(
                f"| {i} | {d['orders']:,.0f} | {d['secs']:.3f} | {d['rate']:,.0f} | {d['batch']} "
                f"| {d['batch_ms']:.1f} | {d['ceiling']:,.0f} | {d['ceiling_ms']:.1f} | {ratio:.0%} | {verdict(ratio >= 0.9)} |"
            )
        rates = [d["rate"] for d in drains]
        ceilings = [d["ceiling"] for d in drains]
        lines.append(
            f"| median | | | {median(rates):,.0f} | | | {median(ceilings):,.0f} | | {ratio_of(median(rates), median(ceilings)):.0%} | |"
        )
        with_cpu = [d for d in drains if {"pg", "redis", "worker"} <= d["cpu"].keys()]
        if with_cpu:
            lines += [
                "",
                "CPU time per batch (from `/proc`, in ticks of 10 ms over drains of about 0.2 s, less an",
                "idle reading of the same kind, so within about ±20%): PostgreSQL's processes, Redis and",
                "the worker process from the worker's start until 2 s after its last batch, less what the",
                "next 2 s cost them with nothing to write; and PostgreSQL's while pgbench ran. The two",
                "cores carry all of it.",
                "",
                "| run | PostgreSQL ms | Redis ms | worker ms | sum ms | sum / 2 cores ms | PostgreSQL ms (pgbench) |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for i, d in enumerate(drains, 1):
                c = d["cpu"]
                if d not in with_cpu:
                    continue
                total = c["pg"] + c["redis"] + c["worker"]
                lines.append(
                    f"| {i} | {c['pg']:.1f} | {c['redis']:.1f} | {c['worker']:.1f} | {total:.1f} "
                    f"| {total / 2:.1f} | {c.get('pgbench_pg', float('nan')):.1f} |"
                )
    demos = demo_runs(out)
    if demos:
        lines += [
            "",
            "### End to end: 100,000 buyers for 10,000 units (`seckill-sim demo`, PostgreSQL)",
            "",
            "`seckill-sim demo --stock 10000 --users 100000 --requests 100000 --per-user-limit 1 --pay-share 0 --late-payers 0 --latecomers 0 --seed <run>` (no payments: the figure is the first crowd and its drain).",
            "Its crowd is the demo's own (reqwest, a token signed per request), not `seckill-sim load`.",
            "Target: every accepted order written within twice the time the buyers took to send.",
            "",
            "| run | requests/s | buyers sent for s | drained s later | (send + drain) / send | accepted | written | invariants |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for i, d in enumerate(demos, 1):
            if d is None:
                lines.append(f"| {i} | the run gave no verdict (see target/bench/demo-{i}.txt) | | | | | | |")
                continue
            ratio = (d["crowd_secs"] + d["drain_secs"]) / d["crowd_secs"]
            lines.append(
                f"| {i} | {d['throughput']:,.0f} | {d['crowd_secs']:.2f} | {d['drain_secs']:.2f} "
                f"| {ratio:.2f} ({verdict(ratio <= 2)}) | {d['accepted']:,} | {d['written']:,} "
                f"| {'all hold' if d['holds'] else '**VIOLATED**'} |"
            )
    lines += ["", f"![throughput and latency]({os.path.relpath(svg, os.path.dirname(markdown))})", "", END]
    text = open(markdown).read() if os.path.exists(markdown) else "# Benchmarks\n\n"
    block = "\n".join(lines)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(markdown, "w").write(text)
    os.makedirs(os.path.dirname(svg), exist_ok=True)
    open(svg, "w").write(chart(scenarios, t, reserve, healthz))
    print("\n".join(lines[lines.index("### Closed loop: throughput against the ceilings") :]))
    print(f"\nwrote {markdown} and {svg}")


def chart(scenarios, t, reserve, healthz):
    """Two panels: median throughput per scenario with its ceiling, and latency percentiles."""
    bars = [
        ("GET /healthz", median(t["healthz"]), None),
        ("sold out", median(t["sold_out"]), healthz),
        ("accept, 1 SKU", median(t["accept"]), reserve),
        ("accept, 50 SKUs", median(t["accept50"]), reserve),
        ("reserve script", reserve, None),
    ]
    width, height, left, top, bottom = 960, 420, 70, 40, 80
    panel = (width - 2 * left) / 2 - 20
    known = [v for _, v, _ in bars if v == v] + [c for _, _, c in bars if c and c == c]
    # A report of part of the scenarios (ONLY=worker) has no throughput to draw.
    top_value = max(known) * 1.1 if known else 1.0
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14">Median answers/s (closed loop) and the ceiling each is compared to</text>',
    ]
    plot_h = height - top - bottom
    step = panel / len(bars)
    for i, (label, value, ceiling) in enumerate(bars):
        x = left + i * step + step * 0.15
        w = step * 0.7
        if value == value:
            h = plot_h * value / top_value
            svg.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#4878a8"/>')
            svg.append(f'<text x="{x + w / 2:.1f}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle">{value / 1000:.1f}k</text>')
        if ceiling and ceiling == ceiling:
            y = top + plot_h - plot_h * ceiling / top_value
            svg.append(f'<line x1="{x - 4:.1f}" x2="{x + w + 4:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c44" stroke-width="2" stroke-dasharray="5,3"/>')
        svg.append(f'<text x="{x + w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{label}</text>')
    svg.append(f'<line x1="{left}" x2="{left + panel}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="black"/>')
    svg.append(f'<text x="{left}" y="{height - 30}" fill="#c44">dashed: the ceiling of the same run (/healthz for sold out, the reserve script for accept)</text>')
    # Latency panel.
    x0 = left + panel + 60
    series = [("healthz", "GET /healthz"), ("sold_out", "sold out"), ("accept", "accept"), ("accept_half", "accept, half rate (open)")]
    quantiles = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9")]
    values = {
        name: [median([r["all"][q] for r in scenarios[name]]) for q, _ in quantiles]
        for name, _ in series
        if scenarios[name]
    }
    top_ms = max([v for vs in values.values() for v in vs] + [1]) * 1.1
    svg.append(f'<text x="{x0}" y="{top - 14}">latency ms (median over runs)</text>')
    colors = ["#4878a8", "#e08a2c", "#3a9a5b", "#8a5aa8"]
    group = panel / len(quantiles)
    for qi, (_, qlabel) in enumerate(quantiles):
        for si, (name, _) in enumerate(series):
            if name not in values:
                continue
            v = values[name][qi]
            w = group * 0.8 / len(series)
            x = x0 + qi * group + group * 0.1 + si * w
            h = plot_h * v / top_ms
            svg.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{colors[si]}"/>')
        svg.append(f'<text x="{x0 + qi * group + group / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{qlabel}</text>')
    svg.append(f'<line x1="{x0}" x2="{x0 + panel}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="black"/>')
    for si, (name, label) in enumerate(series):
        svg.append(f'<rect x="{x0 + si * 120}" y="{height - 45}" width="10" height="10" fill="{colors[si]}"/>')
        svg.append(f'<text x="{x0 + si * 120 + 14}" y="{height - 36}">{label}</text>')
    svg.append(f'<text x="{x0}" y="{height - 14}">top of the scale: {top_ms:.1f} ms</text>')
    svg.append(f'<text x="{left}" y="{height - 14}">top of the scale: {top_value:,.0f}/s</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def wait_drained(url):
    """Polls the worker's /metrics until its lag on every partition is 0 (two readings in a row:
    the gauge is refreshed on a timer)."""
    started = time.monotonic()
    zeros = 0
    while time.monotonic() - started < 300:
        text = fetch(url)
        lags = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("seckill_consumer_lag_messages{") and "dlq" not in line
        ]
        zeros = zeros + 1 if lags and sum(lags) == 0 else 0
        if zeros >= 2:
            return time.monotonic() - started
        time.sleep(0.5)
    raise SystemExit("the worker did not drain within 300 s")


def fetch(url, deadline_secs=60):
    """The text at `url`, waiting (up to the deadline) for a service that is still starting."""
    started = time.monotonic()
    while True:
        try:
            return urllib.request.urlopen(url, timeout=5).read().decode()
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() - started > deadline_secs:
                raise
            time.sleep(0.05)


def wait_written(url):
    """Waits until the worker has written orders and its orders-written counter has not moved
    for 2 s (read every 250 ms: each reading renders the worker's /metrics, which costs it
    CPU)."""
    def written():
        text = fetch(url)
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("seckill_orders_persisted_total{")
        )

    started = time.monotonic()
    last, last_change = written(), time.monotonic()
    while time.monotonic() - started < 300:
        time.sleep(0.25)
        now = written()
        if now != last:
            last, last_change = now, time.monotonic()
        elif last > 0 and time.monotonic() - last_change >= 2:
            return
    raise SystemExit("the worker did not finish writing within 300 s")


def drain_rate(database, since):
    """The rate of the worker's batches, from the rows it wrote after `since`: every row of a
    batch has the batch's `created_at`, so the orders of all batches but the last, over the time
    from the first batch's start to the last one's, is the rate of batch after batch."""
    query = f"""
        WITH batches AS (
            SELECT created_at, count(*) AS orders FROM orders
            WHERE created_at >= '{since}' GROUP BY created_at)
        SELECT sum(orders) - (SELECT orders FROM batches ORDER BY created_at DESC LIMIT 1),
            extract(epoch FROM max(created_at) - min(created_at))
        FROM batches"""
    answer = subprocess.run(
        ["psql", database, "-qAtF", " ", "-c", query], capture_output=True, text=True, check=True
    ).stdout.split()
    if len(answer) != 2 or answer[0] == "":
        raise SystemExit(f"the worker wrote no orders after {since}")
    return float(answer[0]), max(float(answer[1]), 1e-9)


def pgbench_script(batch):
    """The order worker's transaction for one batch of `batch` orders of one SKU, as the worker
    sends it to PostgreSQL (seen with log_statement = 'all'): the read of the sale's payment
    window, the insert of the batch from one array per column (awaiting payment until now + the
    sale's window), the guarded stock update. Every order is new, so the worker reads none back.
    Order ids, buyers and keys are new in every transaction (made from the transaction's id, so
    the statements need no pgbench variable: pgbench allows 255)."""
    def array(element, sql_type):
        return "ARRAY[" + ", ".join(element(i) for i in range(batch)) + f"]::{sql_type}[]"

    columns = [
        array(lambda i: f"concat('pgbench-sku.', txid_current(), '.{i}')", "text"),
        array(lambda i: f"concat('buyer-', txid_current(), '.{i}')", "text"),
        array(lambda i: "'pgbench-sku'", "text"),
        array(lambda i: "1", "int4"),
        array(lambda i: "concat('key-', txid_current())", "text"),
        array(lambda i: "now()", "timestamptz"),
    ]
    return "\n".join(
        [
            "BEGIN;",
            'SELECT "sales"."sku_id", "sales"."payment_window_secs" FROM "sales" WHERE "sales"."sku_id" IN (\'pgbench-sku\');',
            'INSERT INTO "orders" ("order_id", "user_id", "sku_id", "quantity", "idempotency_key", '
            '"status", "reason", "requested_at", "created_at", "updated_at", "pay_by") '
            "SELECT o.order_id, o.user_id, o.sku_id, o.quantity, o.idempotency_key, 'awaiting_payment', NULL, "
            "o.requested_at, now(), now(), now() + make_interval(secs => s.payment_window_secs) "
            "FROM UNNEST(" + ", ".join(columns) + ") "
            "WITH ORDINALITY AS o(order_id, user_id, sku_id, quantity, idempotency_key, requested_at, n) "
            'LEFT JOIN "sales" s ON s.sku_id = o.sku_id ORDER BY o.n ON CONFLICT DO NOTHING RETURNING "order_id";',
            f'UPDATE "sales" SET "stock" = "stock" - {batch} WHERE "sku_id" = \'pgbench-sku\' AND "stock" >= {batch};',
            "COMMIT;",
        ]
    ) + "\n"


def worker_batches(url):
    """The worker's batch counters: orders in batches, and seconds spent in them."""
    text = fetch(url)
    value = lambda name: sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")
    )
    return value("seckill_consumer_batch_size_messages_sum"), value(
        "seckill_consumer_batch_duration_seconds_sum"
    ), value("seckill_consumer_batch_size_messages_count")


# Thread names of the stack process, by what runs on them.
THREAD_GROUPS = (
    ("actix-server wo", "http"),  # the gateway's HTTP workers (and the idle ops servers)
    ("rdk:", "kafka"),  # librdkafka: producer, consumers and the in-process mock broker
    ("producer pollin", "kafka"),
    ("tokio-rt-worker", "runtime"),  # worker, replayer, Redis connection, marks
    ("sqlx", "database"),
)


def thread_ticks(pid):
    """CPU ticks (user + system) per thread group of process `pid`."""
    ticks = {}
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            text = open(stat).read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        used = int(fields[11]) + int(fields[12])
        group = next((g for prefix, g in THREAD_GROUPS if name.startswith(prefix)), "other")
        ticks[group] = ticks.get(group, 0) + used
    return ticks


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "thread-ticks":
        print(json.dumps(thread_ticks(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "pgbench-script":
        sys.stdout.write(pgbench_script(int(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "worker-batches":
        print(" ".join(f"{v:.6f}" for v in worker_batches(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == "fetch":
        sys.stdout.write(fetch(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "wait-written":
        wait_written(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "drain-rate":
        orders, secs = drain_rate(sys.argv[2], sys.argv[3])
        print(f"{orders:.0f} {secs:.3f} {orders / secs:.0f}")
    elif len(sys.argv) == 3 and sys.argv[1] == "wait-drained":
        print(f"{wait_drained(sys.argv[2]):.1f}")
    elif len(sys.argv) == 4 and sys.argv[1] == "median-throughput":
        values = [r["throughput"] for r in load_runs(sys.argv[2], sys.argv[3])]
        print(round(median(values)))
    elif len(sys.argv) == 5 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
