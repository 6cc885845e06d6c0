"""Bounded soak: paced ACME issuance at about half the measured capacity, watching memory and errors.

    make soak                                    # 10 minutes, SQLite, two CT logs
    python -m bench.soak --duration 180 --rate 10 --json soak.json
    python -m bench.soak --database-url postgresql+psycopg://postgres@127.0.0.1:5432/soak --duration 180

The stack is bench.issuance's (``tnca init``, two ``tnca ctlog serve`` logs, ``tnca serve`` under
gunicorn, one delegation, one pre-minted single-use authority token and account key per issuance),
on loopback only. First a closed-loop burst (``--burst`` seconds, ``--clients`` threads) measures
capacity, unless ``--rate`` is given; then an open-loop load starts one issuance every 1/rate
seconds (rate = half the capacity) for ``--duration`` seconds, run by a small pool of client
threads. Every ``--sample`` seconds it records the RSS of the whole server process tree (gunicorn
master and workers, both CT logs; VmRSS from /proc), and the issuances, errors and latencies of
that window.

Reported: issuances, errors by kind (ACME problem type or HTTP status; ``rateLimited`` counted
apart), throughput of the first and last minute and their drift, p50/p95/p99 per window, RSS after
the warm-up minute and at the end. PASS needs RSS growth < 10 %, no errors apart from rate limits
and throughput drift within ±10 %; the exit code is 0 on PASS, 1 on FAIL. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from acme import errors as acme_errors
from acme import messages

from bench.proctree import process_tree, rss_kib
from bench.issuance import (Stack, create_delegation, issue_one, machine, make_csr, mint_jobs,
                            percentile)

NUMBERS = 10000  # the size of bench.issuance.DELEGATED_RANGE: one number per issuance
RSS_GROWTH_LIMIT = 10.0  # %
DRIFT_LIMIT = 10.0  # %
GRACE = 120.0  # seconds after the last paced start before pending issuances are abandoned


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, messages.Error):
        return exc.typ.rsplit(":", 1)[-1] if exc.typ else f"HTTP {exc.code}"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, acme_errors.Error):
        return f"acme {type(exc).__name__}"
    return type(exc).__name__


def latency_summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {"p50": round(statistics.median(values) * 1000, 1),
            "p95": round(percentile(values, 0.95) * 1000, 1),
            "p99": round(percentile(values, 0.99) * 1000, 1)}


class Recorder:
    """Outcomes as (completion time, latency or None, error kind or None)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: list[tuple[float, float | None, str | None]] = []

    def add(self, latency: float | None, kind: str | None) -> None:
        with self.lock:
            self.outcomes.append((time.monotonic(), latency, kind))

    def between(self, start: float, end: float) -> list[tuple[float, float | None, str | None]]:
        with self.lock:
            return [o for o in self.outcomes if start <= o[0] < end]


def attempt(directory_url: str, job, csr_pem: bytes, recorder: Recorder, stop: threading.Event) -> None:
    if stop.is_set():
        return
    try:
        latency = issue_one(directory_url, job, csr_pem, user_agent="tnca-soak")
    except Exception as exc:  # noqa: BLE001 (every failure is counted by kind)
        recorder.add(None, error_kind(exc))
    else:
        recorder.add(latency, None)


def burst(stack: Stack, jobs, clients: int, seconds: float, csr_pem: bytes, stop: threading.Event) -> tuple[float, int]:
    """Closed loop: `clients` threads issue back to back for `seconds`; returns (per second, jobs used)."""
    recorder = Recorder()
    lock = threading.Lock()
    queue = iter(jobs)
    used = 0

    def loop(deadline: float) -> None:
        nonlocal used
        while time.monotonic() < deadline and not stop.is_set():
            with lock:
                job = next(queue, None)
                if job is None:
                    return
                used += 1
            attempt(stack.directory_url, job, csr_pem, recorder, stop)

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(started + seconds,), daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    done = [o for o in recorder.outcomes if o[2] is None]
    failed = [o[2] for o in recorder.outcomes if o[2] is not None]
    if failed:
        print(f"burst:      {len(failed)} errors: {sorted(set(failed))}", flush=True)
    return len(done) / wall, used


def soak(stack: Stack, jobs, rate: float, duration: float, pool_size: int, sample: float, warmup: float,
         csr_pem: bytes, stop: threading.Event) -> dict:
    recorder = Recorder()
    roots = [process.pid for process in stack.processes]
    samples: list[dict] = []
    pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="soak")
    started = time.monotonic()
    late = 0  # starts the scheduler made more than one interval late

    def sampler() -> None:
        window_start = started
        while not stop.wait(max(0.0, window_start + sample - time.monotonic())):
            window_end = time.monotonic()
            outcomes = recorder.between(window_start, window_end)
            latencies = [o[1] for o in outcomes if o[1] is not None]
            pids = process_tree(roots)
            entry = {"t": round(window_end - started, 1), "rss_kib": rss_kib(pids), "processes": len(pids),
                     "issued": len(latencies), "errors": sum(1 for o in outcomes if o[2] is not None),
                     "throughput_per_s": round(len(latencies) / (window_end - window_start), 2),
                     "latency_ms": latency_summary(latencies)}
            samples.append(entry)
            print(f"  t={entry['t']:6.1f}s  rss {entry['rss_kib'] / 1024:7.1f} MiB  "
                  f"{entry['throughput_per_s']:5.1f}/s  errors {entry['errors']}  "
                  f"p50 {entry['latency_ms']['p50']} ms  p99 {entry['latency_ms']['p99']} ms", flush=True)
            window_start = window_end
            if window_end - started >= duration:
                return

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    try:
        for index, job in enumerate(jobs):
            due = started + index / rate
            now = time.monotonic()
            if due > now:
                if stop.wait(due - now):
                    break
            elif now - due > 1 / rate:
                late += 1
            pool.submit(attempt, stack.directory_url, job, csr_pem, recorder, stop)
        watcher.join(timeout=max(0.0, started + duration + sample + 5 - time.monotonic()))
        # Issuances still running after the paced window may finish within the grace period.
        deadline = started + duration + GRACE
        while pool._work_queue.qsize() and time.monotonic() < deadline and not stop.is_set():  # noqa: SLF001
            time.sleep(0.5)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return {"recorder": recorder, "samples": samples, "started": started, "late_starts": late}


def report(args, rate: float, capacity: float | None, result: dict) -> dict:
    recorder, samples, started = result["recorder"], result["samples"], result["started"]
    duration = args.duration
    outcomes = recorder.outcomes
    errors: dict[str, int] = {}
    for _, _, kind in outcomes:
        if kind is not None:
            errors[kind] = errors.get(kind, 0) + 1
    rate_limited = errors.pop("rateLimited", 0)
    issued = sum(1 for o in outcomes if o[2] is None)
    minute = min(60.0, duration / 2)

    def throughput(start: float, end: float) -> float:
        return sum(1 for o in recorder.between(started + start, started + end) if o[2] is None) / (end - start)

    first, last = throughput(0, minute), throughput(duration - minute, duration)
    drift = (last - first) / first * 100 if first else float("inf")
    after_warmup = [s for s in samples if s["t"] >= min(args.warmup, duration / 2)]
    rss_start = after_warmup[0]["rss_kib"] if after_warmup else None
    rss_end = samples[-1]["rss_kib"] if samples else None
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else float("inf")
    checks = {
        f"RSS growth < {RSS_GROWTH_LIMIT:g} %": growth < RSS_GROWTH_LIMIT,
        "no errors apart from rate limits": not errors and issued > 0,
        f"throughput drift within ±{DRIFT_LIMIT:g} %": abs(drift) <= DRIFT_LIMIT,
    }
    return {
        "machine": machine(),
        "database": (args.database_url or "sqlite").split(":")[0],
        "ct_logs": 0 if args.no_ct else 2,
        "workers": args.workers,
        "capacity_per_s": None if capacity is None else round(capacity, 2),
        "rate_per_s": round(rate, 2),
        "duration_s": duration,
        "client_threads": args.pool,
        "scheduled": result["scheduled"],
        "issued": issued,
        "late_starts": result["late_starts"],
        "errors": errors,
        "rate_limited": rate_limited,
        "throughput_first_minute_per_s": round(first, 2),
        "throughput_last_minute_per_s": round(last, 2),
        "throughput_drift_pct": round(drift, 1),
        "latency_ms": latency_summary([o[1] for o in outcomes if o[1] is not None]),
        "rss_after_warmup_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_pct": round(growth, 1),
        "windows": samples,
        "checks": checks,
        "pass": all(checks.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="tnca bounded soak (paced ACME issuance, RSS and errors)")
    parser.add_argument("--home", type=Path, default=Path("./tnca-home-soak"))
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of paced load")
    parser.add_argument("--rate", type=float, default=None,
                        help="issuances started per second (default: half the capacity the burst measures)")
    parser.add_argument("--burst", type=float, default=20.0, help="seconds of the closed-loop capacity burst")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients in the burst")
    parser.add_argument("--pool", type=int, default=8, help="client threads running the paced issuances")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds per sampling window")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the starting RSS is taken")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the home")
    parser.add_argument("--no-ct", action="store_true", help="issue without CT logs")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = parser.parse_args()

    def terminate(signum, frame):  # SIGTERM cleans up like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    stop = threading.Event()
    csr_pem = make_csr()
    try:
        with Stack(args.home, workers=args.workers, ct=not args.no_ct, database_url=args.database_url) as stack:
            home = stack.home
            with home.sessionmaker() as session:
                delegation = create_delegation(session, home)
                next_index = 0
                capacity = None
                if args.rate is None:
                    count = min(NUMBERS // 4, int(args.burst * 50))
                    jobs = mint_jobs(session, home, delegation, range(count))
                    session.commit()
                    capacity, used = burst(stack, jobs, args.clients, args.burst, csr_pem, stop)
                    next_index = used
                    rate = capacity / 2
                    print(f"capacity:   {capacity:.1f}/s in a {args.burst:g}s burst with {args.clients} clients; "
                          f"soaking at {rate:.1f}/s", flush=True)
                else:
                    rate = args.rate
                total = math.ceil(rate * args.duration)
                if next_index + total > NUMBERS:
                    raise SystemExit(f"{total} issuances do not fit the {NUMBERS} numbers delegated; "
                                     "lower --rate or --duration")
                minting_started = time.monotonic()
                jobs = mint_jobs(session, home, delegation, range(next_index, next_index + total))
                session.commit()
            print(f"minted:     {total} tokens in {time.monotonic() - minting_started:.1f}s; "
                  f"soak for {args.duration:g}s", flush=True)
            result = soak(stack, jobs, rate, args.duration, args.pool, args.sample, args.warmup, csr_pem, stop)
            result["scheduled"] = total
    except KeyboardInterrupt:
        stop.set()
        print("interrupted: processes stopped", file=sys.stderr)
        return 130
    summary = report(args, rate, capacity, result)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"machine:    {summary['machine']}")
    print(f"setup:      {summary['database']}, {summary['ct_logs']} CT logs, {args.workers} gunicorn workers, "
          f"{args.pool} client threads, {summary['rate_per_s']}/s for {args.duration:g}s")
    print(f"issued:     {summary['issued']} of {summary['scheduled']} scheduled "
          f"({summary['late_starts']} starts late by more than one interval)")
    print(f"errors:     {summary['errors'] or 'none'}; rate limited: {summary['rate_limited']}")
    print(f"throughput: first minute {summary['throughput_first_minute_per_s']}/s, last minute "
          f"{summary['throughput_last_minute_per_s']}/s, drift {summary['throughput_drift_pct']} %")
    lat = summary["latency_ms"]
    print(f"latency:    p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms (whole run)")
    print(f"RSS:        {summary['rss_after_warmup_kib']} KiB after warm-up, {summary['rss_end_kib']} KiB at the end, "
          f"growth {summary['rss_growth_pct']} %")
    verdict = "PASS" if summary["pass"] else "FAIL"
    failed = [name for name, ok in summary["checks"].items() if not ok]
    print(f"{verdict}: " + ("; ".join(summary["checks"]) if not failed else "failed: " + "; ".join(failed)))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
