"""Reading a table file a user hands us (CSV or Parquet): clear errors and bounded memory.

Every command that takes a table goes through ``read_table``, so a broken,
binary, mis-encoded or huge file ends in one ``TableFileError`` naming the
file (and the line when known) instead of a traceback. The header is checked
before the body is read, so a file lacking a required column is refused at
once whatever its size, and the body is parsed in chunks from a stream that
refuses NUL bytes and endless lines, so memory follows the rows, not the bytes.
"""
from __future__ import annotations

import codecs
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

#: Rows parsed at a time.
CHUNK_ROWS = 100_000
#: A CSV line longer than this is refused (a table's rows are short; a sparse
#: or binary file would otherwise be held whole as one line).
MAX_LINE_BYTES = 8 << 20
CSV_SUFFIXES = (".csv", ".txt")
PARQUET_SUFFIXES = (".parquet",)


class TableFileError(ValueError):
    """A table file cannot be read; the message names the file and, when known, the line."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
        self.path, self.line = str(path), line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def read_table(path: str | os.PathLike, required: Iterable[str] = ()) -> pd.DataFrame:
    """The table in ``path`` (.csv/.txt or .parquet); ``required`` columns are checked first.

    Raises ``TableFileError`` for anything that is not a readable table with
    those columns; CSV cells are parsed by pandas' usual type inference.
    """
    suffix = Path(path).suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path, list(required))
    if suffix in CSV_SUFFIXES:
        return _read_csv(path, list(required))
    raise TableFileError(path, "expected a .csv or .parquet file")


def _check_columns(path, found: list, required: list[str]) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        shown = ", ".join(repr(str(c)) for c in found[:20]) or "none"
        raise TableFileError(path, f"missing column {', '.join(repr(c) for c in missing)} "
                                   f"(the file has {shown})", line=1)


# --------------------------------------------------------------------------- parquet


def _read_parquet(path, required: list[str]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            _check_columns(path, list(pf.schema_arrow.names), required)
            batches = [b.to_pandas() for b in pf.iter_batches(batch_size=CHUNK_ROWS)]
            if not batches:
                return pf.schema_arrow.empty_table().to_pandas()
    except TableFileError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError, IndexError) as err:
        # pyarrow raises several types for corrupt or unsupported files
        raise TableFileError(path, f"not a readable Parquet file: {_first_line(err)}") from None
    return pd.concat(batches, ignore_index=True) if len(batches) > 1 else batches[0]


# --------------------------------------------------------------------------- csv


class _CheckedText:
    """A UTF-8 text stream over a file that refuses NUL bytes and over-long lines, naming the line."""

    def __init__(self, path):
        self.path = path
        self._fh = open(path, "rb")
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        self.line = 1           # line number of the start of what is still unread
        self._since_newline = 0  # bytes of the current line seen so far

    def read(self, size: int = -1) -> str:
        raw = self._fh.read(size if size and size > 0 else 1 << 20)
        try:
            text = self._decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            bad = self._decoder_line(raw[:err.start])
            raise TableFileError(self.path, f"not UTF-8 text (byte {raw[err.start:err.start + 1]!r}); "
                                            "save the file as UTF-8", line=bad) from None
        nul = text.find("\0")
        if nul >= 0:
            raise TableFileError(self.path, "binary data (a NUL byte), not a CSV text file",
                                 line=self.line + text.count("\n", 0, nul))
        last = text.rfind("\n")
        self._since_newline = len(text) - last - 1 if last >= 0 else self._since_newline + len(text)
        if self._since_newline > MAX_LINE_BYTES:
            raise TableFileError(self.path, f"a line longer than {MAX_LINE_BYTES >> 20} MiB: "
                                            "not a table", line=self.line + text.count("\n"))
        self.line += text.count("\n")
        return text

    def _decoder_line(self, good: bytes) -> int:
        return self.line + good.count(b"\n")

    def __iter__(self):  # pandas checks for it on file-like objects
        return self

    def __next__(self):
        raise StopIteration

    def close(self) -> None:
        self._fh.close()


def _read_csv(path, required: list[str]) -> pd.DataFrame:
    try:
        header = _header(path)
        _check_columns(path, list(header.columns), required)
        stream = _CheckedText(path)
        try:
            with warnings.catch_warnings():
                # a row longer than the header would silently become the index
                warnings.simplefilter("error", pd.errors.ParserWarning)
                with pd.read_csv(stream, chunksize=CHUNK_ROWS, index_col=False) as reader:
                    chunks = list(reader)
        finally:
            stream.close()
    except pd.errors.ParserWarning as err:
        raise TableFileError(path, f"a row has more fields than the header: {_first_line(err)}") from None
    except pd.errors.EmptyDataError:
        raise TableFileError(path, "the file is empty (expected a header line)") from None
    except pd.errors.ParserError as err:
        raise TableFileError(path, f"not a readable CSV file: {_first_line(err)}") from None
    except OSError as err:
        raise TableFileError(path, f"cannot read: {err.strerror or err}") from None
    if not chunks:
        return header
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def _header(path) -> pd.DataFrame:
    """The empty frame of the header line alone: a huge file is judged by its first line."""
    import io

    with open(path, "rb") as fh:
        raw = fh.readline(MAX_LINE_BYTES + 1)
    if len(raw) > MAX_LINE_BYTES:
        raise TableFileError(path, f"a header line longer than {MAX_LINE_BYTES >> 20} MiB: not a table",
                             line=1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TableFileError(path, f"not UTF-8 text (byte {raw[err.start:err.start + 1]!r}); "
                                   "save the file as UTF-8", line=1) from None
    if "\0" in text:
        raise TableFileError(path, "binary data (a NUL byte), not a CSV text file", line=1)
    return pd.read_csv(io.StringIO(text), nrows=0)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
