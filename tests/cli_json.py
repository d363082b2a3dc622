"""The ``--json`` contract every verb keeps: one JSON object per stdout line, each with ``event`` and ``t``
(seconds since the command started, never decreasing), the last one ``{"event": "result", "command",
"exit_code", …}``."""

from __future__ import annotations

import json
from typing import Any


def json_lines(stdout: str, command: str, exit_code: int) -> list[dict[str, Any]]:
    """The objects of a ``--json`` run, checked against the contract; returns them (the result last)."""
    objects = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert objects, "no JSON output"
    for obj in objects:
        assert isinstance(obj.get("event"), str) and isinstance(obj.get("t"), (int, float)), obj
    times = [obj["t"] for obj in objects]
    assert times == sorted(times), times
    result = objects[-1]
    assert result["event"] == "result" and result["command"] == command and result["exit_code"] == exit_code, result
    assert [o for o in objects[:-1] if o["event"] == "result"] == []
    if exit_code:
        assert isinstance(result.get("error"), str) and "\n" not in result["error"]
    return objects
