"""Child-process entry of one measured phase: `python -m bench.phase NAME SPEC.json RESULT.json`.

Runs `bench.phases.PHASES[NAME]` on the spec and writes its result, with this process's CPU
seconds and peak resident memory (VmHWM), or the error and its traceback, to RESULT.json.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from pathlib import Path


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str]) -> int:
    name, spec_path, result_path = argv
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    spec = json.loads(Path(spec_path).read_text())
    try:
        from bench.phases import PHASES

        result = {"ok": True, **PHASES[name](spec)}
    except BaseException as exc:  # reported to the parent, which decides what it means
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    from bench.memory import own_high_water_mark_bytes

    result["cpu_seconds"] = _cpu_seconds()
    result["own_peak_rss_bytes"] = own_high_water_mark_bytes()
    Path(result_path).write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
