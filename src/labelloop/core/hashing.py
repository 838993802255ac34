"""Content hashes identify an item: the same content is stored once."""

import hashlib


def content_hash(content: str | bytes) -> str:
    """Hex SHA-256 of the content (text is encoded as UTF-8), 64 characters."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()
