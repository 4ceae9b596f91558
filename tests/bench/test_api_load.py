"""The read-API load generator (bench/api_load.py) against small stand-in servers: it counts
every error, measures latency from the scheduled send time (a slow server shows up in the
percentiles), notices when the offered rate is not sustained, and draws its query mix from the
catalog with each environment's own key and customers. No timing of Meterhouse is asserted."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from bench.api_load import (
    MIX,
    Query,
    build_mix,
    percentile,
    read_api_keys,
    run_load,
    summarize,
)
from orchestration.generate import generate_dataset

START = datetime(2026, 10, 1, tzinfo=UTC)


def _handler(delay: float = 0.0, fail_every: int = 0):
    """Answers 200 with JSON after `delay` s; 500 to every request whose body's `i` is
    `fail_every - 1` modulo `fail_every`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("content-length", 0))
            number = json.loads(self.rfile.read(length))["i"]
            time.sleep(delay)
            failing = fail_every and number % fail_every == fail_every - 1
            body = b'{"code": "boom"}' if failing else b'{"items": []}'
            self.send_response(500 if failing else 200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


@contextmanager
def serving(handler, threading_server: bool = True) -> Iterator[str]:
    server = (ThreadingHTTPServer if threading_server else HTTPServer)(("127.0.0.1", 0),
                                                                       handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _queries(n: int) -> list[Query]:
    return [Query("usage_30d_day", "POST", "/v1/meter-usage/analytics", {}, {"i": i})
            for i in range(n)]


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7
    assert percentile([], 50) is None


def test_every_error_is_counted_and_kept_out_of_the_latencies() -> None:
    with serving(_handler(fail_every=4)) as url:
        result = run_load(url, _queries(40), rate=100, warmup_seconds=0)
    assert result["requests"] == 40
    assert result["errors"] == 10 and result["answered"] == 30
    assert result["error_reasons"] == {"HTTP 500": 10}
    assert not result["sustained"]  # errors: the rate does not count as sustained


def test_a_server_that_falls_behind_shows_in_latency_and_is_not_sustained() -> None:
    # one request at a time, 50 ms each: 20 answers/s at most, 100 offered
    with serving(_handler(delay=0.05), threading_server=False) as url:
        result = run_load(url, _queries(300), rate=100, warmup_seconds=0, max_in_flight=10)
    assert not result["sustained"]
    assert result["not_sent"] > 0 and result["sent"] + result["not_sent"] == 300
    assert result["errors"] == 0
    # latency runs from the scheduled instant: the queue behind the slow server counts
    assert result["p99_ms"] > 200


def test_a_fast_server_sustains_a_modest_rate() -> None:
    with serving(_handler()) as url:
        result = run_load(url, _queries(60), rate=40, warmup_seconds=0.5)
    assert result["sustained"], result
    assert result["warmup_requests"] == 20 and result["requests"] == 40
    assert result["errors"] == 0 and result["p50_ms"] is not None


def test_summarize_reports_each_query_kind() -> None:
    samples = [{"kind": "a", "ok": True, "latency_ms": 1.0, "error": "", "detail": ""},
               {"kind": "b", "ok": True, "latency_ms": 3.0, "error": "", "detail": ""},
               {"kind": "b", "ok": False, "latency_ms": 9.0, "error": "HTTP 503",
                "detail": "x"}]
    result = summarize(samples, duration=1.0, rate=3)
    assert result["by_kind"]["b"] == {"requests": 2, "p50_ms": 3.0, "p99_ms": 3.0}
    assert result["errors"] == 1 and result["requests_per_second"] == 2


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mix")
    return generate_dataset(root, events=200, days=31, seed=5, tenants=2, customers=30)


def test_the_mix_uses_each_environments_key_customers_and_meters(catalog) -> None:
    keys = read_api_keys(catalog.api_keys_file)
    queries = build_mix(catalog.catalog_dir, keys, START, 31, 600, seed=1)
    by_key = {}
    for path in sorted(Path(catalog.catalog_dir).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        by_key[keys[(doc["tenant_id"], doc["environment_id"])]] = (
            {c["external_id"] for c in doc["customers"]}, {m["id"] for m in doc["meters"]})
    kinds = Counter(q.kind for q in queries)
    for kind, share in MIX:
        assert abs(kinds[kind] / len(queries) - share) < 0.08
    for query in queries:
        customers, meters = by_key[query.headers["x-api-key"]]
        assert query.body["external_customer_id"] in customers
        assert set(query.body.get("meter_ids", [])) <= meters
        start = datetime.fromisoformat(query.body["start_time"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(query.body["end_time"].replace("Z", "+00:00"))
        days = {"usage_30d_day": 30, "usage_1d_hour": 1, "events_group_by": 7}[query.kind]
        assert (end - start).days == days and start >= START
    assert build_mix(catalog.catalog_dir, keys, START, 31, 50, seed=1) == queries[:50]
