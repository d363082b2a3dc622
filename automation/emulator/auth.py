"""Who may call the emulator: HTTP Basic (``KAGGLE_USERNAME``/``KAGGLE_KEY``) or a Bearer access token."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AuthConfig:
    """Accepted credentials.

    ``users``: when set, only these ``{username: key}`` pairs are accepted; when None (the default) any
    user with a non-empty key is. ``rejected_keys``: keys always refused (to test exit-code-4 paths).
    ``tokens``: ``{access_token: username}`` accepted as Bearer tokens and by IntrospectToken.
    """

    users: dict[str, str] | None = None
    rejected_keys: frozenset[str] = frozenset()
    tokens: dict[str, str] = field(default_factory=dict)

    def user_for(self, authorization: str | None) -> str | None:
        """The authenticated username for an ``Authorization`` header value, or None."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return self.tokens.get(value)
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, key = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep or not user or not key or key in self.rejected_keys:
            return None
        if self.users is not None and self.users.get(user) != key:
            return None
        return user
