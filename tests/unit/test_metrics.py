"""ca/metrics.py: what each recording point adds, read back from prometheus_client's registry
(this process keeps its values in memory: no PROMETHEUS_MULTIPROC_DIR under pytest)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from ca import metrics
from ca.records import store


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_database_errors_are_counted_by_kind_at_the_engine(tmp_path):
    engine = store.make_engine(f"sqlite:///{tmp_path / 'metrics.db'}")
    operational = value("tnca_database_errors_total", kind="operational")
    integrity = value("tnca_database_errors_total", kind="integrity")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(OperationalError), engine.connect() as connection:
        connection.execute(text("SELECT * FROM no_such_table"))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()
    assert value("tnca_database_errors_total", kind="operational") == operational + 1
    assert value("tnca_database_errors_total", kind="integrity") == integrity + 1


def test_rate_limited_counter_is_labelled_by_the_limit():
    before = value("tnca_rate_limited_total", limit="new_orders_per_account")
    metrics.rate_limited("new_orders_per_account")
    metrics.rate_limited("new_orders_per_account")
    assert value("tnca_rate_limited_total", limit="new_orders_per_account") == before + 2


def test_issuance_histogram_counts_by_outcome():
    before = value("tnca_issuance_duration_seconds_count", outcome="transient")
    metrics.observe_issuance("transient", 0.2)
    assert value("tnca_issuance_duration_seconds_count", outcome="transient") == before + 1
    assert value("tnca_issuance_duration_seconds_bucket", outcome="transient", le="0.25") >= 1


@pytest.mark.parametrize("raw, label", [
    ("atc.fingerprint", "atc.fingerprint"),
    ("/acme/order/<order_id>/finalize", "/acme/order/<order_id>/finalize"),
    ("a claim\nwith a newline", "other"),
    ('quote"d', "other"),
    ("x" * 81, "other"),
])
def test_label_values_are_short_identifiers_or_other(raw, label):
    """A label value never carries arbitrary text: the number of series stays bounded."""
    assert metrics.label(raw) == label
