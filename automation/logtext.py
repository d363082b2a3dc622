"""Turn a kernel's raw console log into readable text (``kaggle_output_log.txt``), streaming.

Two inputs are understood:

* **Kaggle's ``<slug>.log``**: the text of a JSON array of ``{"stream_name", "time", "data"}`` objects that
  Kaggle writes one object per line with leading commas (``[{…}\\n,{…}\\n,{…}]``).
* **plain console text** (the local and Docker runners' ``console.log``).

What the output gets: records in time order, ``\\r`` progress bars folded to the last state of each line,
stderr lines prefixed ``[stderr] ``, ANSI colour codes dropped, credentials redacted (:mod:`tunix_rt.redact`).

Memory stays flat however large the log is:

* the file is read in blocks of about :data:`BLOCK_BYTES` cut at line ends. A block of whole lines
  parses with one JSON call on its undecoded bytes (the leading commas make ``[`` + block + ``]`` a valid
  array; ``orjson``, a core dependency for this; the text is built once, by the parser), and a
  block that does not parse (a truncated or damaged log) falls back to line-wise parsing, salvaging what
  it can of a cut-off last object;
* time order uses a **bounded reorder window**: Kaggle writes records nearly in time order, so parsed
  records are merged into a sorted buffer and everything except the newest :data:`REORDER_WINDOW`
  records is written out. A record that arrives more than that many records after a later-timed one
  is written where it arrived (and counted in ``LogStats.late``) rather than holding the whole log;
* an unterminated line (a progress bar redrawn with ``\\r`` for hours) is folded once it grows past
  :data:`MAX_PENDING_CHARS`, and force-split if it still has no ``\\r`` to fold.

Per-line work is kept cheap: records are kept as the dicts ``json.loads`` made, consecutive records of one
stream are joined, and folding, prefixing and redaction run over whole joined texts with C-level string
methods (``rfind``, ``count``, ``replace``, one regex scan), never in a Python loop per line.

An empty or missing raw log never gives an empty file: a one-line note says there was no output.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

# orjson parses a block of the Kaggle log 2-3x faster than json (bench/log_processing.py, BENCHMARKS.md).
from orjson import loads as _loads_json

from .fsutil import atomic_output
from .redact import Redactor

BLOCK_BYTES = 1 << 20  # read size; a block is cut at its last newline
REORDER_WINDOW = 2048  # records kept back for time ordering
MAX_PENDING_CHARS = 1 << 16  # an unterminated line longer than this is folded (or split)
_WRITE_BATCH = 2048  # output lines buffered before a write

NOTE_PREFIX = "[tunix-rt] "
STDERR_PREFIX = "[stderr] "

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_KAGGLE_START = re.compile(rb"^\s*\[\s*(?:\{|\]|$)")
_SALVAGE_DATA = re.compile(r'"data"\s*:\s*"((?:[^"\\]|\\.)*)')
_SALVAGE_STREAM = re.compile(r'"stream_name"\s*:\s*"(\w+)"')
_SALVAGE_TIME = re.compile(r'"time"\s*:\s*(-?[0-9.eE+-]+)')
_TIME = itemgetter("time")
_STREAM = itemgetter("stream_name")
_DATA = itemgetter("data")
_NUMBER = {int, float}


@dataclass
class LogStats:
    """What one conversion saw."""

    format: str  # "kaggle-json" | "text" | "empty" | "missing"
    records: int = 0  # Kaggle records parsed (text: chunks read)
    lines: int = 0  # lines written (notes included)
    skipped: int = 0  # Kaggle lines that could not be parsed at all
    salvaged: int = 0  # cut-off Kaggle records whose data was partly recovered
    late: int = 0  # records too far out of order for the reorder window
    truncated: bool = False  # a Kaggle log without its closing "]"


def detect_format(raw: Path) -> str:
    """``"kaggle-json"`` when the file starts like Kaggle's JSON array log, ``"empty"`` for a file with
    no content, else ``"text"``."""
    with open(raw, "rb") as fh:
        head = fh.read(256)
    head = head.removeprefix(codecs.BOM_UTF8)
    if not head.strip():
        return "empty"
    return "kaggle-json" if _KAGGLE_START.match(head) else "text"


def _fold(line: str) -> str:
    """The last drawn state of a line redrawn with carriage returns (``\\r\\n`` counts as ``\\n``)."""
    for piece in reversed(line.split("\r")):
        if piece.strip():
            return piece
    return ""


def _fold_lines(text: str) -> str:
    """``text`` with every line that holds a ``\r`` folded; the cost grows with those lines only."""
    out = []
    pos = 0
    while (cr := text.find("\r", pos)) >= 0:
        start = text.rfind("\n", 0, cr) + 1
        end = text.find("\n", cr)
        end = len(text) if end < 0 else end
        out.append(text[pos:start])
        out.append(_fold(text[start:end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


class _Writer:
    """Assembles per-stream lines from data chunks and writes them, folded, cleaned and redacted."""

    def __init__(self, fh: BinaryIO, redactor: Redactor, stats: LogStats) -> None:
        self._fh = fh
        self._redact = redactor.redact
        self._stats = stats
        self._pending: dict[str, str] = {}
        self._out: list[str] = []
        self._n_out = 0  # lines in _out
        self.content_lines = 0  # log lines (not notes) written or buffered

    def feed(self, stream: str, data: str) -> None:
        buf = self._pending[stream] + data if stream in self._pending else data
        cut = buf.rfind("\n")
        if cut >= 0:
            self.text(stream, buf[:cut])
            buf = buf[cut + 1 :]
        if len(buf) > MAX_PENDING_CHARS:
            if "\r" in buf:
                # Keep only the latest redraw (and a trailing \r, so the next redraw replaces it).
                buf = _fold(buf) + ("\r" if buf.endswith("\r") else "")
            if len(buf) > MAX_PENDING_CHARS:
                self.text(stream, buf)
                buf = ""
        self._pending[stream] = buf

    def text(self, stream: str, text: str) -> None:
        """Write whole lines of one stream (``text`` without its final newline). The work runs over the
        whole text with C-level string methods, never line by line in Python."""
        n = text.count("\n") + 1
        if "\r" in text:
            text = _fold_lines(text)
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if stream != "stdout":
            prefix = STDERR_PREFIX if stream == "stderr" else f"[{stream}] "
            text = prefix + text.replace("\n", "\n" + prefix)
        self._out.append(text)
        self._n_out += n
        self.content_lines += n
        if self._n_out >= _WRITE_BATCH:
            self.flush()

    def note(self, text: str) -> None:
        self._out.append(NOTE_PREFIX + text)
        self._n_out += 1

    def close(self) -> None:
        for stream, buf in self._pending.items():
            if buf:
                self.text(stream, buf)
        self._pending.clear()
        self.flush()

    def flush(self) -> None:
        if self._out:
            self._stats.lines += self._n_out
            # Redacting the batch, not each line: the patterns never cross a newline.
            self._fh.write(utf8(self._redact("\n".join(self._out)) + "\n"))
            self._out.clear()
            self._n_out = 0


_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (a record's ``"\\ud800"`` escape, an undecodable byte kept by
    ``surrogateescape``) replaced by U+FFFD: such text cannot be written as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, lone surrogates replaced (:func:`replace_surrogates`) instead of crashing."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return replace_surrogates(text).encode("utf-8")


def _iter_blocks(fh: BinaryIO) -> Iterator[bytes]:
    """Yield the file as blocks of whole lines (the last block may end without a newline), undecoded: the
    array syntax is trimmed and the block parsed as bytes, so the text is built once, by the JSON parser
    (copies of a decoded block cost up to 4 bytes per character)."""
    rest = b""
    first = True
    while chunk := fh.read(BLOCK_BYTES):
        if first:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
            first = False
        data = rest + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        rest = data[cut + 1 :]
        yield data[: cut + 1]
    if rest:
        yield rest


def _array_body(raw: bytes) -> bytes:
    """:func:`_strip_array_syntax` on undecoded bytes."""
    raw = raw.strip()
    if raw.startswith(b"["):
        raw = raw[1:].lstrip()
    if raw.startswith(b","):
        raw = raw[1:].lstrip()
    if raw.endswith(b"]"):
        raw = raw[:-1].rstrip()
    return raw


def _strip_array_syntax(text: str) -> str:
    """Drop a leading ``[`` and/or ``,`` and a trailing ``]`` (objects always end with ``}``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].lstrip()
    if text.startswith(","):
        text = text[1:].lstrip()
    if text.endswith("]"):
        text = text[:-1].rstrip()
    return text


class _KaggleParser:
    """Parses blocks of Kaggle's log into records ``{"time": float, "stream_name": str, "data": str}``."""

    def __init__(self, stats: LogStats) -> None:
        self.stats = stats
        self.last_time = 0.0

    def _record(self, obj: object) -> dict[str, Any] | None:
        if not isinstance(obj, dict):
            return None
        t = obj.get("time")
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            self.last_time = float(t)
        data = obj.get("data", "")
        stream = obj.get("stream_name") or "stdout"
        data = data if isinstance(data, str) else str(data)
        return {"time": self.last_time, "stream_name": str(stream), "data": data}

    def block(self, raw: bytes) -> list[dict[str, Any]]:
        body = _array_body(raw)
        if not body:
            return []
        try:
            items = _loads_json(b"[" + body + b"]")  # bytes in: one UTF-8 decode, inside the parser
        except ValueError:  # damaged JSON or invalid UTF-8 (UnicodeDecodeError is a ValueError)
            return self._by_line(raw.decode("utf-8", errors="replace"))
        try:  # fast path: every object well formed (the normal case), no per-record Python code
            if (
                items
                and set(map(type, items)) == {dict}
                and set(map(type, map(_TIME, items))) <= _NUMBER
                and set(map(type, map(_STREAM, items))) | set(map(type, map(_DATA, items))) == {str}
            ):
                self.last_time = float(items[-1]["time"])
                return items
        except KeyError:
            pass
        out = []
        for obj in items:
            rec = self._record(obj)
            if rec is not None:
                out.append(rec)
        return out

    def _by_line(self, text: str) -> list[dict[str, Any]]:
        out = []
        for raw_line in text.split("\n"):
            body = _strip_array_syntax(raw_line)
            if not body:
                continue
            try:
                obj = json.loads(body)
                items = obj if isinstance(obj, list) else [obj]
            except RecursionError:  # nested deeper than a parser goes: not a record, kept as text
                items = [{"stream_name": "stdout", "data": body + "\n"}]
            except ValueError:
                try:
                    items = json.loads("[" + body + "]")  # several objects on one line
                except (ValueError, RecursionError):
                    items = [self._salvage(body)]
            for obj in items:
                rec = self._record(obj) if obj is not None else None
                if rec is None:
                    self.stats.skipped += 1
                else:
                    out.append(rec)
        return out

    def _salvage(self, body: str) -> dict | None:
        """The readable part of a cut-off object: its stream, time and the data written so far."""
        m = _SALVAGE_DATA.search(body)
        if not m:
            return None
        data = m.group(1)
        for _ in range(6):  # drop a half-written escape (\, \u12, …) at the cut
            try:
                text = json.loads('"' + data + '"')
                break
            except ValueError:
                data = data[:-1]
        else:
            return None
        self.stats.salvaged += 1
        stream = _SALVAGE_STREAM.search(body)
        t = _SALVAGE_TIME.search(body)
        obj: dict[str, object] = {"stream_name": stream.group(1) if stream else "stdout", "data": text}
        if t:
            with contextlib.suppress(ValueError):
                obj["time"] = float(t.group(1))
        return obj


def _emit(recs: list[dict[str, Any]], writer: _Writer, stats: LogStats, last_written: float) -> float:
    """Feed time-sorted records to the writer, one call per run of the same stream."""
    if recs and recs[0]["time"] < last_written:  # only the head can be older than what was already written
        stats.late += sum(1 for t in map(_TIME, recs) if t < last_written)
    for stream, group in groupby(recs, key=_STREAM):
        writer.feed(stream, "".join(map(_DATA, group)))
    return max(last_written, recs[-1]["time"]) if recs else last_written


def _convert_kaggle(fh: BinaryIO, writer: _Writer, stats: LogStats) -> None:
    parser = _KaggleParser(stats)
    held: list[dict[str, Any]] = []  # sorted by time; at most REORDER_WINDOW after each block
    last_written = float("-inf")
    tail = b""
    for raw in _iter_blocks(fh):
        recs = parser.block(raw)
        stats.records += len(recs)
        if raw and not raw.isspace():
            tail = raw
        if not recs:
            continue
        held.extend(recs)
        held.sort(key=_TIME)  # stable (file order for equal times) and ~linear on nearly sorted input
        if len(held) > REORDER_WINDOW:
            n = len(held) - REORDER_WINDOW
            last_written = _emit(held[:n], writer, stats, last_written)
            del held[:n]
    _emit(held, writer, stats, last_written)
    writer.close()
    stats.truncated = bool(tail) and not tail.rstrip().endswith(b"]")
    if stats.truncated or stats.skipped:
        writer.note(
            f"the raw log is truncated or damaged: {stats.skipped} unreadable record(s) skipped, "
            f"{stats.salvaged} cut-off record(s) kept in part"
        )
    if stats.late:
        writer.note(f"{stats.late} record(s) arrived too far out of time order and were kept where they came")


def _convert_text(fh: BinaryIO, writer: _Writer, stats: LogStats) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    first = True
    while chunk := fh.read(BLOCK_BYTES):
        if first:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
            first = False
        stats.records += 1
        writer.feed("stdout", decoder.decode(chunk))
    writer.feed("stdout", decoder.decode(b"", final=True))
    writer.close()


def convert_log(
    raw: Path | None,
    out: Path,
    *,
    fmt: str = "auto",
    redactor: Redactor | None = None,
) -> LogStats:
    """Write the readable, redacted text of the raw log ``raw`` to ``out`` (atomically) and return stats.

    ``fmt`` is ``"auto"`` (detect), ``"kaggle-json"`` or ``"text"``. ``raw`` may be None or missing: the
    output is then a one-line note, never an empty file.
    """
    redactor = redactor or Redactor()
    name = raw.name if raw is not None else "none"
    if raw is None or not Path(raw).is_file():
        stats = LogStats(format="missing")
    else:
        stats = LogStats(format=detect_format(raw) if fmt == "auto" else fmt)
    with atomic_output(out) as fh:
        writer = _Writer(fh, redactor, stats)
        if stats.format in ("kaggle-json", "text"):
            with open(raw, "rb") as src:  # type: ignore[arg-type]
                (_convert_kaggle if stats.format == "kaggle-json" else _convert_text)(src, writer, stats)
        if writer.content_lines == 0:
            if stats.format == "missing":
                writer.note("no raw console log was captured for this run")
            else:
                writer.note(f"the kernel produced no console output (raw log {name} is empty)")
        writer.flush()
    return stats
