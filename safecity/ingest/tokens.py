"""Who may write what: one bearer token per source, kept only as a hash.

``safecity ingest token --file FILE --name NAME --tables events,units`` creates a
token, prints it once, and stores its SHA-256 with the source's name and the tables
it may write. A token is 32 random bytes, so a plain hash is enough (no password
stretching needed), and a stolen token file gives no token. The file is JSON, mode
600, rewritten atomically; giving a name again replaces that source's token.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: What a token may be allowed to write (the API's tables, and camera tiles/health).
WRITABLE = ("events", "observations", "units", "police-log", "cameras")
PREFIX = "sct_"


@dataclass(frozen=True)
class Source:
    """A source known by its token: its name and the tables it may write."""

    name: str
    tables: frozenset[str]
    rate: float | None = None  # rows per second it may send (None: the server's default)

    def may_write(self, table: str) -> bool:
        return table in self.tables


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tables(text: str) -> frozenset[str]:
    tables = frozenset(t.strip() for t in text.split(",") if t.strip())
    unknown = sorted(tables - set(WRITABLE))
    if not tables or unknown:
        raise ValueError(f"tables {', '.join(unknown) or '(none)'}: expected a comma-separated "
                         f"list of {', '.join(WRITABLE)}")
    return tables


def create_token(path: str | os.PathLike, name: str, tables: frozenset[str] | str,
                 rate: float | None = None) -> str:
    """Add (or replace) source ``name`` in the token file; return its new token.

    ``rate`` caps the rows per second it may send (beyond: 429), else the server's default.
    """
    if isinstance(tables, str):
        tables = parse_tables(tables)
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"source name {name!r}: use letters, digits, '-', '_' or '.'")
    path = Path(path)
    entries = _read(path) if path.exists() else []
    token = PREFIX + secrets.token_urlsafe(32)
    entries = [e for e in entries if e["name"] != name] + [{
        "name": name, "sha256": _digest(token), "tables": sorted(tables),
        "created": pd.Timestamp.now(tz="UTC").isoformat()} | ({"rate": float(rate)} if rate else {})]
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"tokens": entries}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return token


class TokenBook:
    """The sources a server accepts, loaded from a token file."""

    def __init__(self, sources: dict[str, Source]):
        self._by_digest = sources

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenBook":
        return cls({e["sha256"]: Source(e["name"], frozenset(e["tables"]), e.get("rate"))
                    for e in _read(Path(path))})

    def check(self, authorization: str | None) -> Source | None:
        """The source whose token is in an ``Authorization: Bearer ...`` header, else None."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self._by_digest.get(_digest(authorization[len("Bearer "):].strip()))

    def __len__(self) -> int:
        return len(self._by_digest)


def _read(path: Path) -> list[dict]:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"{path}: readable by others (mode {stat.S_IMODE(mode):o}); "
                         f"chmod 600 {path}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["tokens"]
        for i, e in enumerate(entries):
            if not (isinstance(e.get("name"), str) and isinstance(e.get("sha256"), str)
                    and isinstance(e.get("tables"), list)):
                raise ValueError(f"entry {i} needs name, sha256 and tables")
            parse_tables(",".join(e["tables"]))
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a safecity token file: {err}") from None
    return entries
