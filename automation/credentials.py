"""Kaggle credentials exactly as the kaggle 2.2.5 client finds them, before any network call.

The client's order (``KaggleApi.authenticate``, ``kaggle_api_extended.py`` ~1483; kagglesdk
``kaggle_env.get_access_token_from_env``):

1. an **API token** ("Generate New Token" on kaggle.com/settings/api, kaggle-cli ``docs/README.md``):
   ``KAGGLE_API_TOKEN`` (the token, or the path of a file holding it), else ``~/.kaggle/access_token``
   (or ``access_token.txt``). The client checks it over the network (``IntrospectToken``); a token the
   server calls inactive (expired, revoked) is *ignored* and the client goes on to step 2
   (``_authenticate_with_access_token`` returns False).
2. the **legacy API key** ("Create Legacy API Key" → ``kaggle.json``): ``username``/``key`` from
   ``<config dir>/kaggle.json``, every ``KAGGLE_*`` variable overriding the file
   (``read_config_environment``). An unreadable ``kaggle.json`` is skipped silently by the client
   (``read_config_file``: bare ``except: pass``), so it does not matter when ``KAGGLE_USERNAME`` and
   ``KAGGLE_KEY`` are both set; we only say so when the file was the only place left to look.
3. **OAuth** credentials from ``kaggle auth login`` (``~/.kaggle/credentials.json``).

:func:`find_credentials` lists what is there (no network); :func:`source_used` says, after the client
authenticated, which of them it really used, so every message names the real source. Values are kept
only to be redacted, never printed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EXIT_AUTH, TunixRtError

WHERE_CREDENTIALS = (
    "set KAGGLE_API_TOKEN (kaggle.com → Settings → API → Generate New Token; or save it in "
    "~/.kaggle/access_token), or KAGGLE_USERNAME and KAGGLE_KEY, or put kaggle.json (Settings → API → "
    "Create Legacy API Key) in {config_dir} with chmod 600"
)
OAUTH_FILE = "~/.kaggle/credentials.json"  # kagglesdk KaggleCredentials.DEFAULT_CREDENTIALS_FILE

TOKEN = "token"
LEGACY = "legacy"
OAUTH = "oauth"


def config_dir() -> Path:
    """The kaggle client's config folder: KAGGLE_CONFIG_DIR, else ~/.kaggle if it exists, else
    $XDG_CONFIG_HOME/kaggle or ~/.config/kaggle (the client's own order; evaluated now, not at import)."""
    env = os.environ.get("KAGGLE_CONFIG_DIR")
    if env:
        return Path(env)
    home_dir = Path(os.path.expanduser("~")) / ".kaggle"
    if home_dir.exists() or not sys.platform.startswith("linux"):
        return home_dir
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(xdg) / "kaggle"


def where_to_put_them() -> str:
    return WHERE_CREDENTIALS.format(config_dir=config_dir())


@dataclass(frozen=True)
class Credentials:
    """The credentials the client will use (never their values, except for redaction).

    ``source`` names where they come from ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME/KAGGLE_KEY", a path);
    ``kind`` is token / legacy / oauth; ``fallback`` is the legacy key's source when a token comes
    first (the client falls back to it when the token is not accepted).
    """

    source: str
    kind: str
    username: str | None
    secrets: tuple[str, ...]  # every credential value found, to redact from anything we print or write
    fallback: str | None = None
    fallback_username: str | None = None

    def as_used(self, kind: str) -> Credentials:
        """These credentials after the client chose ``kind`` (a token's fallback to the legacy key or to
        OAuth when the token was not accepted)."""
        if kind == self.kind:
            return self
        if kind == LEGACY and self.fallback:
            return Credentials(self.fallback, LEGACY, self.fallback_username, self.secrets)
        if kind == OAUTH:
            return Credentials(str(Path(os.path.expanduser(OAUTH_FILE))), OAUTH, None, self.secrets)
        return self


# The longest KAGGLE_API_TOKEN the client can take: it calls Path(token).exists() first (kaggle_env.py
# get_access_token_from_env), which raises ENAMETOOLONG ("File name too long", quoting the token) for a value
# longer than a file name may be (NAME_MAX 255 on Linux).
MAX_ENV_TOKEN_CHARS = 255
OAUTH_SECRET_FIELDS = ("refresh_token", "access_token")  # kagglesdk kaggle_creds.py KaggleCredentials.save


def _read_text(path: Path) -> str | None:
    """A small credential file's stripped text, or None when it cannot be read (never raises)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else None
    except (OSError, ValueError):
        return None


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(_read_text(path) or "{}")
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def config_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Every folder the kaggle client may read kaggle.json from, whichever it picks today: KAGGLE_CONFIG_DIR,
    ~/.kaggle, $XDG_CONFIG_HOME/kaggle and ~/.config/kaggle (kaggle_api_extended.py ~1155)."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    dirs = [Path(environ["KAGGLE_CONFIG_DIR"])] if environ.get("KAGGLE_CONFIG_DIR") else []
    dirs += [home / ".kaggle", Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle",
             home / ".config" / "kaggle"]
    return list(dict.fromkeys(dirs))


def known_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Every credential value the kaggle client or :func:`find_credentials` could use on this machine, from
    every source either reads, whichever one wins: ``KAGGLE_KEY``; ``KAGGLE_API_TOKEN`` (its value, and the
    content of the file it names); ``KAGGLE_API_V1_TOKEN`` (a file, in a Kaggle notebook); the ``key`` of
    ``kaggle.json`` in every folder of :func:`config_dirs`; ``~/.kaggle/access_token(.txt)``; the tokens of
    the OAuth ``~/.kaggle/credentials.json``. The redactor removes all of them from everything tunix-rt
    prints or writes, and ``package`` refuses a zip holding any. Never raises."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or os.path.expanduser("~"))
    values = {environ.get("KAGGLE_KEY") or ""}
    for var in ("KAGGLE_API_TOKEN", "KAGGLE_API_V1_TOKEN"):
        named = environ.get(var) or ""
        # The content of the file it names, else (a value too long for a file name too) the token itself.
        content = _read_text(Path(named)) if named and "\x00" not in named else None
        values.add(content if content is not None else (named if var == "KAGGLE_API_TOKEN" else ""))
    for folder in config_dirs(environ):  # ~/.kaggle is one of them; a token file elsewhere is redacted too
        key = _json_file(folder / "kaggle.json").get("key")
        values.add(key if isinstance(key, str) else "")
        for name in ("access_token", "access_token.txt"):
            values.add(_read_text(folder / name) or "")
    oauth = _json_file(Path(str(home / OAUTH_FILE.removeprefix("~/"))))
    values |= {v for k, v in oauth.items() if k in OAUTH_SECRET_FIELDS and isinstance(v, str)}
    return {v.strip() for v in values if v and v.strip()}


def _token() -> tuple[str, str] | None:
    """(value, source) of an API token, where kagglesdk's get_access_token_from_env looks."""
    env = os.environ.get("KAGGLE_API_TOKEN")
    if env:
        if len(env) > MAX_ENV_TOKEN_CHARS:
            raise TunixRtError(f"KAGGLE_API_TOKEN holds {len(env)} characters: the kaggle client first tries it as "
                               f"a file name (at most {MAX_ENV_TOKEN_CHARS}) and crashes; save the token in "
                               "~/.kaggle/access_token instead, or set KAGGLE_API_TOKEN to that file's path",
                               EXIT_AUTH)
        path = Path(env)
        if path.exists():  # the client reads a path's content (kaggle_env.py: Path(token).exists())
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError:
                value = ""
            return (value, f"KAGGLE_API_TOKEN ({path.name})") if value else None
        return env, "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        path = Path(os.path.expanduser("~/.kaggle")) / name
        if path.is_file():
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if value:
                return value, str(path)
    return None


def _legacy() -> tuple[str, str, str] | None:
    """(username, key, source) of the legacy API key, or None. Raises EXIT_AUTH only for a kaggle.json
    that cannot be read when nothing else supplies the username and key."""
    cfg = config_dir() / "kaggle.json"
    env_user, env_key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    file_values: dict[str, Any] = {}
    problem: str | None = None
    if cfg.is_file() and not (env_user and env_key):
        try:
            loaded = json.loads(cfg.read_text(encoding="utf-8") or "{}") or {}
            file_values = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError, RecursionError) as exc:
            problem = f"{cfg}: unreadable kaggle.json ({type(exc).__name__})"
    user = env_user or file_values.get("username")
    key = env_key or file_values.get("key")
    if user and key:
        if env_user and env_key:
            source = "KAGGLE_USERNAME/KAGGLE_KEY"
        elif not env_user and not env_key:
            source = str(cfg)
        else:
            source = f"{'KAGGLE_USERNAME' if env_user else 'KAGGLE_KEY'} + {cfg}"
        return str(user), str(key), source
    if problem:
        raise TunixRtError(f"{problem}; " + where_to_put_them(), EXIT_AUTH)
    return None


def find_credentials() -> Credentials:
    """Find credentials the way the client will, without any network call. Missing → EXIT_AUTH."""
    token = _token()  # a token the client cannot take is refused first (EXIT_AUTH), before any other choice
    try:
        legacy = _legacy()
    except TunixRtError:
        if token is None:
            raise
        legacy = None  # the token comes first; the client never reads the broken file in that case
    used = (token[0] if token else None, legacy[1] if legacy else None)
    secrets = tuple(dict.fromkeys([*(v for v in used if v), *sorted(known_secrets())]))
    if token:
        return Credentials(token[1], TOKEN, None, secrets, fallback=legacy[2] if legacy else None,
                           fallback_username=legacy[0] if legacy else None)
    if legacy:
        return Credentials(legacy[2], LEGACY, legacy[0], secrets)
    oauth = Path(os.path.expanduser(OAUTH_FILE))
    if oauth.is_file():
        return Credentials(str(oauth), OAUTH, None, secrets)
    raise TunixRtError("no Kaggle credentials found: " + where_to_put_them(), EXIT_AUTH)


def source_used(api: Any, found: Credentials) -> Credentials:
    """Which credentials the authenticated ``KaggleApi`` really uses (its ``auth_method``), with the
    username it authenticated as (for a token: the one IntrospectToken answered)."""
    method = str(api.config_values.get(api.CONFIG_NAME_AUTH_METHOD, ""))
    kind = {"ACCESS_TOKEN": TOKEN, "LEGACY_API_KEY": LEGACY, "OAUTH": OAUTH}.get(method, found.kind)
    used = found.as_used(kind)
    username = api.config_values.get(api.CONFIG_NAME_USER) or used.username
    return Credentials(used.source, used.kind, str(username) if username else None, found.secrets,
                       used.fallback, used.fallback_username)
