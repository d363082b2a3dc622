"""``wait --follow`` / ``run --follow``: the kernel's live log stream, shown as it comes.

The log-stream watcher (log_stream.py) already holds Kaggle's live log stream open to see the session end;
with ``--follow`` it hands each new event here (replayed events after a reconnect skipped there). An event is
``{"stream_name": "stdout"|"stderr", "time": s, "data": chunk}`` — the same objects as the ``<slug>.log``
array (the ``kernels_logs_stream`` docstring, kaggle 2.2.5: "JSON ``{stream_name, time, data}`` events"; a
finished session's persisted blob yields the same shape, and an unknown blob format ``{"data": line}``).
``data`` is a raw chunk: a line may be split over events, and progress bars redraw with ``\\r``.

:class:`StreamFeed` turns the chunks into lines with one :class:`~tunix_rt.follow.LineSink` per stream
(so a stderr chunk never splices into a half stdout line): ``\\r`` redraws folded to their last state, ANSI
codes dropped, stderr lines prefixed ``[stderr] `` as in ``kaggle_output_log.txt`` (logtext.py), and hands
each line to the command's :class:`~tunix_rt.follow.Follower`, which redacts it and turns ``TUNIX_RT_METRIC``
lines into the training panel (or ``metric`` events under ``--json``) and the rest into log lines.
"""

from __future__ import annotations

import threading
from typing import Any

from .follow import Follower, LineSink
from .logtext import STDERR_PREFIX


class StreamFeed:
    """Feeds log-stream events into a :class:`Follower` (call it with each event; :meth:`close` at the end)."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.events = 0
        self._sinks: dict[str, LineSink] = {}
        self._lock = threading.Lock()  # the watcher's connections run in threads, one at a time

    def _sink(self, stream_name: str) -> LineSink:
        sink = self._sinks.get(stream_name)
        if sink is None:
            prefix = STDERR_PREFIX if stream_name == "stderr" else ""
            sink = self._sinks[stream_name] = LineSink(lambda line: self.follower.line(prefix + line))
        return sink

    def __call__(self, event: dict[str, Any]) -> None:
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, str) or not data:
            return
        stream_name = event.get("stream_name")
        if stream_name is None and not data.endswith("\n"):
            data += "\n"  # the client's fallback for a line it could not parse: one whole line
        with self._lock:
            self.events += 1
            self._sink(str(stream_name or "stdout")).write(data)

    def close(self) -> None:
        """Pass on the last unterminated line of each stream."""
        with self._lock:
            for sink in self._sinks.values():
                if not sink.closed:
                    sink.close()
