"""Kaggle's kernel log format, written the way Kaggle writes it.

The ``log`` field of ListKernelSessionOutput (and the ``<slug>.log`` the client saves) is the text of a
JSON array, one object per line, each line after the first starting with a comma::

    [{"stream_name":"stdout","time":0.512,"data":"hello\\n"}
    ,{"stream_name":"stderr","time":0.734,"data":"warning\\n"}
    ]

``time`` is seconds since the session started; ``data`` is a raw chunk (partial lines, ``\\r``
progress bars). While a session runs the file has no closing ``]`` yet.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

STREAMS = ("stdout", "stderr")


def format_entry(stream_name: str, time_s: float, data: str) -> str:
    """One log object as Kaggle prints it (compact, keys in Kaggle's order)."""
    return json.dumps(
        {"stream_name": stream_name, "time": round(time_s, 6), "data": data}, separators=(",", ":")
    )


def render(entries: list[dict[str, Any]]) -> str:
    """The complete log text for a list of ``{stream_name, time, data}`` objects."""
    if not entries:
        return "[]"
    lines = [format_entry(e["stream_name"], float(e["time"]), e["data"]) for e in entries]
    return "[" + "\n,".join(lines) + "\n]"


def close_text(partial: str) -> str:
    """Make a log that is still being written (no closing bracket) valid JSON."""
    if not partial:
        return "[]"
    return partial if partial.rstrip().endswith("]") else partial + "\n]"


def parse(text: str) -> list[dict[str, Any]]:
    """Parse a Kaggle log; tolerate a truncated one (line-wise, skipping a torn last line)."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
        if isinstance(value, list):
            return value
    except json.JSONDecodeError:
        pass
    entries = []
    for line in text.splitlines():
        line = line.strip().lstrip("[").lstrip(",").rstrip("]").strip()
        if not line:
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


class KaggleLogWriter:
    """Appends entries to a log file as they arrive (so a running session has a readable partial log)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._count = 0
        self._closed = False

    def write(self, stream_name: str, time_s: float, data: str) -> None:
        if not data:
            return
        with self._lock:
            if self._closed:
                return
            self._fh.write(("[" if self._count == 0 else "\n,") + format_entry(stream_name, time_s, data))
            self._fh.flush()
            self._count += 1

    def close(self) -> None:
        """Finish the array (an empty log becomes ``[]``)."""
        with self._lock:
            if self._closed:
                return
            self._fh.write("[]" if self._count == 0 else "\n]")
            self._fh.close()
            self._closed = True

    def __enter__(self) -> KaggleLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
