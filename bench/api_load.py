"""The read API under load: the real `meterhouse serve` process on loopback, a realistic query
mix sent at a fixed offered rate (open loop), latency percentiles and errors.

- The server is `python -m orchestration.cli serve --warehouse W --port N --workers 2` (what
  `meterhouse serve` runs; MH_API_WORKERS overrides the 2), started in a process of its
  own; its start-up (publishing the serving snapshot) is not measured.
- The mix (`build_mix`) is drawn from the catalog with a fixed seed; every request is for one
  customer of one tenant environment, with that environment's API key:
  - `usage_30d_day`: POST /v1/meter-usage/analytics, one meter, 30 days of DAY windows;
  - `usage_1d_hour`: POST /v1/meter-usage/analytics, one meter, one day of HOUR windows;
  - `events_group_by`: POST /v1/events/analytics, 7 days of DAY windows grouped by `source`
    or by a property, with costs from the customer's subscription.
- Open loop: request i is sent at t0 + i / rate whether or not earlier ones have answered, and
  its latency runs from that scheduled instant to the last byte of the answer, so a server
  (or client) that falls behind shows up in the percentiles instead of lowering the rate
  (no coordinated omission). The first `warmup` seconds are sent at the same rate and left
  out of the numbers.
- An error is any answer other than 200 with a JSON body, or a transport failure or timeout.
  The issue requires zero errors; the run reports every error it saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
MIX = (("usage_30d_day", 0.4), ("usage_1d_hour", 0.3), ("events_group_by", 0.3))
# meter types whose own aggregation the meter-usage endpoint answers from the serving tables
USAGE_TYPES = ("COUNT", "SUM", "SUM_WITH_MULTIPLIER", "AVG", "MAX", "LATEST", "COUNT_UNIQUE")
MIN_STEP_RATE = 5  # requests/s: the lowest rate tried when the offered rate is not sustained
STEP_SECONDS = 5  # seconds per lower rate
SUSTAINED_SHARE = 0.9  # answered requests/s at least this share of the offered rate
GROUP_BY = (["source"], ["properties.region"], ["properties.method"])
# server processes: one per core of the 2-core machine the targets are set for
SERVER_WORKERS = int(os.environ.get("MH_API_WORKERS", "2"))


@dataclass(frozen=True)
class Query:
    kind: str
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_api_keys(path: Path) -> dict[tuple[str, str], str]:
    """(tenant, environment) → plaintext key, from the generator's api_keys.txt."""
    keys = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            tenant, environment, key = line.split()
            keys[(tenant, environment)] = key
    return keys


def build_mix(catalog_dir: Path, api_keys: dict[tuple[str, str], str], start: datetime,
              days: int, count: int, seed: int = 7) -> list[Query]:
    """`count` requests in the proportions of MIX, deterministic for a seed."""
    rng = random.Random(seed)
    environments = []
    for path in sorted(Path(catalog_dir).glob("*.yaml")):
        catalog = yaml.safe_load(path.read_text())
        key = api_keys.get((catalog["tenant_id"], catalog["environment_id"]))
        meters = [m["id"] for m in catalog.get("meters", [])
                  if m["aggregation"]["type"] in USAGE_TYPES
                  and not m["aggregation"].get("bucket_size")]
        customers = [c["external_id"] for c in catalog.get("customers", [])]
        if key and meters and customers:
            weight = len(customers)
            environments.append((weight, key, meters, customers))
    if not environments:
        raise ValueError(f"no tenant environment in {catalog_dir} has a key, meters and "
                         "customers")
    types = {m["id"]: m["aggregation"]["type"]
             for path in sorted(Path(catalog_dir).glob("*.yaml"))
             for m in yaml.safe_load(path.read_text()).get("meters", [])}
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    span_days = max(1, days)
    queries = []
    for _ in range(count):
        _, key, meters, customers = rng.choices(environments,
                                                weights=[e[0] for e in environments])[0]
        customer = rng.choice(customers)
        kind = rng.choices(kinds, weights=weights)[0]
        headers = {"x-api-key": key, "content-type": "application/json"}
        if kind == "usage_30d_day":
            meter = rng.choice(meters)
            lo = start
            body = {"external_customer_id": customer, "meter_ids": [meter],
                    "aggregation_type": types[meter], "start_time": _iso(lo),
                    "end_time": _iso(lo + timedelta(days=min(30, span_days))),
                    "window_size": "DAY"}
            path = "/v1/meter-usage/analytics"
        elif kind == "usage_1d_hour":
            meter = rng.choice(meters)
            lo = start + timedelta(days=rng.randrange(span_days))
            body = {"external_customer_id": customer, "meter_ids": [meter],
                    "aggregation_type": types[meter], "start_time": _iso(lo),
                    "end_time": _iso(lo + timedelta(days=1)), "window_size": "HOUR"}
            path = "/v1/meter-usage/analytics"
        else:
            lo = start + timedelta(days=rng.randrange(max(1, span_days - 6)))
            body = {"external_customer_id": customer, "start_time": _iso(lo),
                    "end_time": _iso(lo + timedelta(days=min(7, span_days))),
                    "group_by": rng.choice(GROUP_BY), "window_size": "DAY"}
            path = "/v1/events/analytics"
        queries.append(Query(kind, "POST", path, headers, body))
    return queries


# --------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`meterhouse serve` in a process of its own on 127.0.0.1; stopped by `stop()`."""

    def __init__(self, warehouse: Path, log_path: Path, startup_timeout: float = 600):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestration.cli", "serve", "--warehouse", str(warehouse),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(SERVER_WORKERS)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_up(startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_until_up(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"meterhouse serve exited with status "
                                   f"{self.process.returncode}: see {self.log_path}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"meterhouse serve did not answer within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # our own child, by its pid
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()


# --------------------------------------------------------------------------------------------
# The load


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in [0, 100])."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n q / 100), at least 1
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


def summarize(samples: list[dict[str, Any]], duration: float, rate: float) -> dict[str, Any]:
    """Latency percentiles (ms), throughput and errors of the measured samples."""
    latencies = sorted(s["latency_ms"] for s in samples if s["ok"])
    errors = [s for s in samples if not s["ok"]]
    by_kind = {}
    for kind in sorted({s["kind"] for s in samples}):
        mine = sorted(s["latency_ms"] for s in samples if s["kind"] == kind and s["ok"])
        by_kind[kind] = {"requests": sum(1 for s in samples if s["kind"] == kind),
                         "p50_ms": percentile(mine, 50), "p99_ms": percentile(mine, 99)}
    reasons: dict[str, int] = {}
    for error in errors:
        reasons[error["error"]] = reasons.get(error["error"], 0) + 1
    return {
        "offered_rate": rate,
        "requests": len(samples),
        "answered": len(latencies),
        "errors": len(errors),
        "error_reasons": reasons,
        "error_examples": [e["detail"] for e in errors[:3]],
        "duration_seconds": duration,
        "requests_per_second": len(latencies) / duration if duration else None,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None,
        "by_kind": by_kind,
    }


async def _send(client, query: Query, scheduled: float) -> dict[str, Any]:
    import httpx

    sample: dict[str, Any] = {"kind": query.kind, "ok": False, "error": "", "detail": ""}
    try:
        response = await client.request(query.method, query.path, headers=query.headers,
                                        content=json.dumps(query.body))
        body = response.content
        finished = time.monotonic()
        if response.status_code != 200:
            sample["error"] = f"HTTP {response.status_code}"
            sample["detail"] = f"{query.kind} {query.body}: {body[:300]!r}"
        else:
            json.loads(body)
            sample["ok"] = True
    except (httpx.HTTPError, ValueError) as exc:
        finished = time.monotonic()
        sample["error"] = type(exc).__name__
        sample["detail"] = f"{query.kind}: {exc}"
    sample["latency_ms"] = (finished - scheduled) * 1000
    return sample


async def _load(base_url: str, queries: list[Query], rate: float, warmup_count: int,
                timeout: float, max_in_flight: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
        tasks: list[asyncio.Task] = []
        in_flight: set[asyncio.Task] = set()
        stopped_at = None
        t0 = time.monotonic() + 0.05
        for i, query in enumerate(queries):
            scheduled = t0 + i / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                stopped_at = i  # the server fell this far behind: the rate is not sustained
                break
            task = asyncio.create_task(_send(client, query, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            tasks.append(task)
        samples = await asyncio.gather(*tasks)
        finished = time.monotonic()
    if stopped_at is not None:
        warmup_count = 0  # overloaded: every request sent is reported
    measured_start = t0 + warmup_count / rate
    return {"samples": list(samples[warmup_count:]),
            "duration": max(finished - measured_start, 1e-9), "stopped_at": stopped_at}


def run_load(base_url: str, queries: list[Query], rate: float, warmup_seconds: float = 2.0,
             timeout: float = 10.0, max_in_flight: int = 100) -> dict[str, Any]:
    """Send `queries` at `rate` per second; the first `warmup_seconds` are not measured.

    When `max_in_flight` requests are waiting for an answer the server cannot keep up with
    the rate: sending stops there, `sustained` is False and the unsent requests are counted
    in `not_sent` (the run does not wait minutes for a queue to drain)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    warmup_count = min(len(queries) - 1, int(warmup_seconds * rate))
    run = asyncio.run(_load(base_url, queries, rate, warmup_count, timeout, max_in_flight))
    stopped = run["stopped_at"]
    result = summarize(run["samples"], run["duration"], rate)
    result["warmup_requests"] = warmup_count if stopped is None else 0
    result["planned_requests"] = len(queries) - warmup_count
    stopped = run["stopped_at"]
    # sustained: never too far behind, and the answers kept up with the offered rate
    result["sustained"] = (stopped is None and result["errors"] == 0
                           and (result["requests_per_second"] or 0) >= SUSTAINED_SHARE * rate)
    result["sent"] = len(queries) if stopped is None else stopped
    result["not_sent"] = 0 if stopped is None else len(queries) - stopped
    result["max_in_flight"] = max_in_flight
    return result


def service_times(base_url: str, queries: list[Query], seconds: float,
                  timeout: float = 30.0) -> dict[str, Any]:
    """Closed loop, one request at a time on one connection, for about `seconds`: what each
    kind of query costs the server alone (and so the most requests/s it can answer)."""
    import httpx

    samples = []
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        for query in queries:
            if time.monotonic() - started > seconds:
                break
            sent = time.monotonic()
            sample = {"kind": query.kind, "ok": False, "error": "", "detail": ""}
            try:
                response = client.request(query.method, query.path, headers=query.headers,
                                          content=json.dumps(query.body))
                sample["ok"] = response.status_code == 200
                if not sample["ok"]:
                    sample["error"] = f"HTTP {response.status_code}"
                    sample["detail"] = f"{query.kind}: {response.content[:300]!r}"
            except httpx.HTTPError as exc:
                sample["error"], sample["detail"] = type(exc).__name__, str(exc)
            sample["latency_ms"] = (time.monotonic() - sent) * 1000
            samples.append(sample)
    duration = time.monotonic() - started
    result = summarize(samples, duration, 0)
    result.pop("offered_rate")
    return result


def measure(warehouse: Path, catalog_dir: Path, api_keys_file: Path, start: datetime,
            days: int, rate: float, seconds: float, log_path: Path, seed: int = 7,
            warmup_seconds: float = 2.0, service_seconds: float = 10.0) -> dict[str, Any]:
    """Start the server; measure one request at a time for `service_seconds` (which also warms
    it up), then send the mix at `rate` for `seconds` (+ warm-up); stop the server."""
    count = int(rate * (seconds + warmup_seconds))
    keys = read_api_keys(api_keys_file)
    queries = build_mix(catalog_dir, keys, start, days, count, seed)
    alone = build_mix(catalog_dir, keys, start, days, 2_000, seed + 1)
    server = Server(warehouse, log_path)
    try:
        one_at_a_time = service_times(server.base_url, alone, service_seconds)
        result = run_load(server.base_url, queries, rate, warmup_seconds)
        result["one_at_a_time"] = one_at_a_time
        result["lower_rates"] = []
        lower = rate
        while not result["lower_rates"] or not result["lower_rates"][-1]["sustained"]:
            if result["sustained"] and not result["lower_rates"]:
                break
            lower /= 2
            if lower < MIN_STEP_RATE:
                break
            # let the server finish what the last step left in its queue
            time.sleep(min(30.0, 100 / max(1.0, one_at_a_time["requests_per_second"] or 1)))
            step = build_mix(catalog_dir, keys, start, days, int(lower * STEP_SECONDS),
                             seed + 2)
            outcome = run_load(server.base_url, step, lower, warmup_seconds=0)
            result["lower_rates"].append({k: outcome[k] for k in (
                "offered_rate", "sustained", "requests", "errors", "requests_per_second",
                "p50_ms", "p95_ms", "p99_ms")})
        result["server_startup_seconds"] = server.startup_seconds
        result["server_alive_after_load"] = server.process.poll() is None
    finally:
        server.stop()
    result["mix"] = {kind: share for kind, share in MIX}
    return result
