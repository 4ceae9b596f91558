"""Where the full build's time goes, read from dbt's run_results.json.

dbt records, per node, the seconds it ran (`execution_time`). With two dbt threads, nodes
overlap, so per-model seconds add up to more than the build's wall time; they still rank the
models, and the rollup path (staging → int_* → fct_meter_usage*) is the part the baselines
compute too.
"""

from __future__ import annotations

from typing import Any

from bench.phases import ROLLUP_MODELS


def profile(run_results: dict[str, Any] | None, top: int = 12) -> dict[str, Any]:
    if not run_results:
        return {"available": False}
    models, tests, unit_tests, other = [], 0.0, 0.0, 0.0
    for result in run_results.get("results", []):
        node = result.get("unique_id", "")
        seconds = float(result.get("execution_time") or 0.0)
        kind = node.split(".", 1)[0]
        if kind == "model":
            models.append({"model": node.rsplit(".", 1)[-1], "seconds": seconds,
                           "status": result.get("status")})
        elif kind == "test":
            tests += seconds
        elif kind == "unit_test":
            unit_tests += seconds
        else:
            other += seconds
    models.sort(key=lambda m: m["seconds"], reverse=True)
    model_seconds = sum(m["seconds"] for m in models)
    rollup = sum(m["seconds"] for m in models if m["model"] in ROLLUP_MODELS)
    return {
        "available": True,
        "dbt_elapsed_seconds": run_results.get("elapsed_time"),
        "model_seconds": model_seconds,
        "rollup_model_seconds": rollup,
        "data_test_seconds": tests,
        "unit_test_seconds": unit_tests,
        "other_seconds": other,
        "models": len(models),
        "top_models": [
            {**m, "share": m["seconds"] / model_seconds if model_seconds else 0.0}
            for m in models[:top]
        ],
    }
