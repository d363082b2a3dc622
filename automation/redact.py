"""Credential redaction for everything tunix-rt writes: logs, evidence, zips, console text.

Two kinds of secrets are removed:

* **known values**: the values of environment variables whose names look secret (``KAGGLE_KEY``,
  ``KAGGLE_API_TOKEN``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*_KEY``) and every credential the
  resolver :func:`tunix_rt.credentials.known_secrets` finds wherever the kaggle client looks (``kaggle.json``
  in every config folder, token files), each also in its base64 and URL-encoded forms;
* **shapes**: HTTP ``Authorization`` Basic/Bearer values, Kaggle ``KGAT_…`` API tokens, a JSON
  ``"key": "<32 hex>"`` (the shape of ``kaggle.json``) and ``KAGGLE_KEY=…``-style assignments.

Everything is one compiled regular expression applied per line (or chunk), so redaction streams and
costs one ``re.sub`` per line; lines without any candidate are returned untouched. A redactor built with
``paths`` (:class:`tunix_rt.hostpaths.HostPaths`) also rewrites the machine's folders, so the same single
pass makes logs and evidence portable.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .credentials import known_secrets

if TYPE_CHECKING:
    from .hostpaths import HostPaths

REDACTED = "[REDACTED]"

# Values shorter than this are not treated as secrets: redacting "1" or "true" would shred the log.
MIN_SECRET_LEN = 6

_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|_KEY$|^KAGGLE_KEY$|APIKEY|API_KEY)", re.IGNORECASE)

# (name, pattern, replacement). Group 1, when present, is a prefix that is kept.
_SHAPES: list[tuple[str, str, str]] = [
    ("authorization header",
     r"(?i)(authorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:basic|bearer|token)[ \t]+)"
     r"(?!\[REDACTED\])[^\s\"',;]+",
     r"\1" + REDACTED),
    # Case-sensitive on purpose: HTTP spells the schemes capitalised, prose says "basic".
    ("bearer/basic credential", r"(\b(?:Bearer|Basic)[ \t]+)[A-Za-z0-9+/=._~-]{16,}", r"\1" + REDACTED),
    ("Kaggle API token", r"\bKGAT_[A-Za-z0-9_-]{8,}", REDACTED),
    ("kaggle.json key", r"(\"key\"[ \t]*:[ \t]*\")[0-9a-fA-F]{32}(\")", r"\1" + REDACTED + r"\2"),
    ("secret assignment",
     r"(\b(?:[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|_KEY))[ \t]*[=:][ \t]*[\"']?)"
     r"(?!\[REDACTED\])[^\s\"']{6,}", r"\1" + REDACTED),
]

# Every shape above contains one of these literal strings (a fast pre-filter before the regexes).
_WHOLE_TEXT_CHARS = 4096  # texts up to this long are searched whole
_HINTS = ("uthoriz", "UTHORIZ", "Bearer", "Basic", "KGAT_", '"key"', "TOKEN", "SECRET", "PASSWORD", "_KEY")


def looks_secret(name: str) -> bool:
    """True for environment variable names that usually hold credentials."""
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """Credential values present on this machine: secret-looking env vars and every value the credential
    resolver finds (:func:`tunix_rt.credentials.known_secrets`: every source the kaggle client reads)."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if looks_secret(k) and v} | known_secrets(environ)
    return {v.strip() for v in values if len(v.strip()) >= MIN_SECRET_LEN}


def encoded_forms(value: str) -> set[str]:
    """``value`` as it may appear encoded: URL-encoded (``quote``/``quote_plus``) and inside base64 text
    (standard and URL-safe alphabets, at each of the three byte alignments; only the characters that depend
    on ``value`` alone, so the form is found whatever surrounds it)."""
    from urllib.parse import quote, quote_plus

    raw = value.encode("utf-8", errors="replace")
    forms = {quote(value, safe=""), quote_plus(value, safe="")}
    for k in range(3):
        start = -(-8 * k // 6)  # the first base64 character made of value's bits only
        end = 8 * (k + len(raw)) // 6  # one past the last such character
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            forms.add(enc(b"\0" * k + raw).decode("ascii")[start:end])
    return {f for f in forms if len(f) >= MIN_SECRET_LEN and f != value}


class Redactor:
    """Replace credentials in text. Build once, call :meth:`redact` per line or chunk."""

    def __init__(self, extra_values: Iterable[str] = (), *, environ: Mapping[str, str] | None = None,
                 paths: HostPaths | None = None) -> None:
        self.paths = paths
        values = secret_values(environ) | {v for v in extra_values if v and len(v) >= MIN_SECRET_LEN}
        self.secrets = frozenset(values)  # the plain values (package searches the zip bytes for them)
        values |= {form for v in values for form in encoded_forms(v)}  # printed base64- or URL-encoded
        # Longest first so a value that contains another is removed whole.
        self._values = sorted(values, key=len, reverse=True)
        self._shapes = [(name, re.compile(pat), repl) for name, pat, repl in _SHAPES]

    def redact(self, text: str) -> str:
        """``text`` with every known secret value and every credential shape replaced by ``[REDACTED]`` (and,
        with ``paths``, the machine's folders rewritten)."""
        if self.paths is not None:
            text = self.paths.scrub(text)
        # Plain substring tests first: they run at memory speed, and most text contains none of them.
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        hints = [hint for hint in _HINTS if hint in text]
        if not hints:
            return text
        if len(text) <= _WHOLE_TEXT_CHARS:
            return self._shapes_sub(text)
        # A long text (a batch of log lines): run the regexes only over the lines holding a hint. The
        # shapes never cross a newline, so the result is the same as over the whole text.
        spans = []
        for hint in hints:
            i = text.find(hint)
            while i >= 0:
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                spans.append((text.rfind("\n", 0, i) + 1, end))
                i = text.find(hint, end)
        spans.sort()
        out, pos = [], 0
        for start, end in spans:
            if end <= pos:
                continue
            start = max(start, pos)
            out += [text[pos:start], self._shapes_sub(text[start:end])]
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _shapes_sub(self, text: str) -> str:
        for _name, rx, repl in self._shapes:
            text = rx.sub(repl, text)
        return text

    def holds_secret(self, data: bytes) -> bool:
        """True when ``data`` (any bytes: a file, a zip) holds a known secret value, raw or encoded."""
        return any(value.encode("utf-8", errors="replace") in data for value in self._values)

    def find(self, text: str) -> list[str]:
        """Names of the credential kinds present in ``text`` (never the values themselves)."""
        found = []
        if any(value in text for value in self._values):
            found.append("secret value from the environment")
        for name, rx, _repl in self._shapes:
            if rx.search(text):
                found.append(name)
        return found


def find_credentials(text: str, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Names of the credential kinds in ``text`` (see :meth:`Redactor.find`)."""
    return Redactor(environ=environ).find(text)


def redact(text: str, *, environ: Mapping[str, str] | None = None) -> str:
    """One-off redaction of ``text`` (build a :class:`Redactor` for many lines)."""
    return Redactor(environ=environ).redact(text)
