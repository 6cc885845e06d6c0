"""Latency of the audit queries over the database ``bench/generate_certificates.py`` filled.

    python -m bench.generate_certificates --database-url URL      # once: 1,000,000 certificates
    python -m bench.audit_query --database-url URL --max-p95-ms 100

Each sample is one complete ``ca.records.queries.certificates`` call, the function behind
``GET /api/v1/certificates`` and ``tnca audit query certificates``: parameter parsing, the SQL
(span-class probes of ``certificate_scope_entries``, then the certificates), and building the
items with their delegation, revocation and issuance audit event. HTTP is not included.

The question asked is the auditor's: which certificates covered number N at time T? N is drawn
from what the year holds: 40 % numbers renewed daily (365 certificates each, one valid at T),
30 % numbers with a one-off certificate, 20 % numbers inside a certificate's range, 10 % numbers
of a delegated block picked blindly (mostly misses); T is uniform over the year. Also measured:
the same numbers without T (the newest 50 certificates), and 100-number ranges at T.

Reported: p50/p95/p99/max in milliseconds per kind after a warm-up, rows returned, and the
PostgreSQL plan of one by-TN query (EXPLAIN ANALYZE, BUFFERS). ``--max-p95-ms`` makes the run fail
(exit 1) when the by-TN-at-T p95 is above it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text

from ca.records import queries, query_filters
from ca.records.store import make_engine, make_sessionmaker

YEAR_START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
DAYS = 365


def _numbers(connection: Any, rng: random.Random, count: int) -> list[str]:
    """count numbers, mixed as the module docstring says (drawn with SQL TABLESAMPLE-free sampling)."""
    hot = [row[0] for row in connection.execute(text(
        "SELECT lo FROM certificate_scope_entries WHERE span_digits = 0 GROUP BY lo HAVING count(*) > 100"))]
    single = [row[0] for row in connection.execute(text(
        "SELECT lo FROM certificate_scope_entries WHERE span_digits = 0 AND certificate_id % 97 = 3 LIMIT 20000"))]
    ranges = [(row[0], row[1]) for row in connection.execute(text(
        "SELECT lo, hi FROM certificate_scope_entries WHERE span_digits > 0 AND certificate_id % 13 = 5 LIMIT 20000"))]
    blocks = [row[0] for row in connection.execute(text(
        "SELECT lo FROM delegation_scope_entries WHERE width IS NOT NULL"))]
    picks = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.4 and hot:
            number = rng.choice(hot)
        elif roll < 0.7 and single:
            number = rng.choice(single)
        elif roll < 0.9 and ranges:
            lo, hi = rng.choice(ranges)
            number = rng.randint(lo, hi)
        else:
            number = rng.choice(blocks) + rng.randrange(1000)
        picks.append(str(number))
    return picks


def _at(rng: random.Random) -> str:
    instant = YEAR_START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _measure(sessionmaker: Any, params: list[dict[str, str]], warmup: int) -> dict[str, Any]:
    timings: list[float] = []
    rows: list[int] = []
    with sessionmaker() as session:
        for index, p in enumerate(params):
            session.expire_all()  # no answers from the identity map
            started = time.perf_counter()
            page = queries.certificates(session, query_filters.parse_certificate_filter(p))
            elapsed = (time.perf_counter() - started) * 1000
            session.rollback()
            if index >= warmup:
                timings.append(elapsed)
                rows.append(len(page.items))
    timings.sort()

    def pct(q: float) -> float:
        return round(timings[min(len(timings) - 1, int(q * len(timings)))], 2)

    return {
        "queries": len(timings),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": round(timings[-1], 2),
        "mean_ms": round(statistics.fmean(timings), 2),
        "rows_mean": round(statistics.fmean(rows), 2), "rows_max": max(rows),
        "empty_answers": sum(1 for r in rows if r == 0),
    }


def _plans(engine: Any, sessionmaker: Any, params: dict[str, str]) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the two statements that answer ``params``: the scope probe
    that picks candidate ids and the read of the certificates by primary key."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        head = statement.lstrip()
        if head.startswith(("SELECT DISTINCT candidates.", "SELECT certificates.")) and len(captured) < 2:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with sessionmaker() as session:
            queries.certificates(session, query_filters.parse_certificate_filter(params))
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    plans = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in captured:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    finally:
        raw.rollback()
        raw.close()
    return plans


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("TNCA_BENCH_DATABASE_URL"),
                        help="the database bench/generate_certificates.py filled (env TNCA_BENCH_DATABASE_URL)")
    parser.add_argument("--queries", type=int, default=2000, help="measured queries per kind")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-p95-ms", type=float, default=None, help="fail when by-TN-at-T p95 exceeds this")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url is required")
    rng = random.Random(args.seed)
    engine = make_engine(args.database_url)
    sessionmaker = make_sessionmaker(engine)
    total = args.queries + args.warmup
    with engine.connect() as connection:
        numbers = _numbers(connection, rng, total)
        certificates = connection.execute(text("SELECT count(*) FROM certificates")).scalar_one()
        server = connection.execute(text("SHOW server_version")).scalar_one()
    kinds: dict[str, Callable[[str], dict[str, str]]] = {
        "tn_at_time": lambda n: {"tn": n, "at": _at(rng)},
        "tn_any_time_first_page": lambda n: {"tn": n},
        "range_100_at_time": lambda n: {"range": f"{n}:100", "at": _at(rng)},
    }
    results = {name: _measure(sessionmaker, [make(n) for n in numbers], args.warmup) for name, make in kinds.items()}
    example = {"tn": numbers[0], "at": "2025-07-01T12:00:00Z"}
    report = {
        "certificates": certificates,
        "postgresql": server,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "processor": _cpu_model()},
        "results": results,
        "plan_example": {"params": example, "plans": _plans(engine, sessionmaker, example)},
    }
    engine.dispose()
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    if args.max_p95_ms is not None and results["tn_at_time"]["p95_ms"] > args.max_p95_ms:
        sys.stderr.write(f"by-TN-at-T p95 {results['tn_at_time']['p95_ms']} ms exceeds {args.max_p95_ms} ms\n")
        raise SystemExit(1)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
