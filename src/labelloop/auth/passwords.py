"""Password hashing with scrypt (standard library), self-describing so parameters can change."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` with a random 16-byte salt."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


# What an unknown user's login is checked against: same scheme and cost as a real hash, so a
# login takes as long whether or not the name exists. No password matches it (its digest is
# zeros, and the check compares digests, never the password).
DUMMY_HASH = (
    f"scrypt${_N}${_R}${_P}${base64.b64encode(bytes(16)).decode()}"
    f"${base64.b64encode(bytes(32)).decode()}"
)


def verify_password(password: str, stored: str | None) -> bool:
    """True if ``password`` matches ``stored``; constant-time comparison."""
    if not stored or not password:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


def token_digest(token: str) -> str:
    """What is stored for a random token (API token, session cookie): its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()
