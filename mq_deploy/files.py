"""File hashing shared by export, check, build and the provenance checks (graphs' external data,
plans and plugin libraries can be gigabytes, so files are read in blocks)."""

from __future__ import annotations

import hashlib


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
