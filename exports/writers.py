"""Writing rows to one file per split and format: JSONL lines and Parquet row groups. No Django here.

Output is deterministic: keys and columns in the schema's order, no timestamps in the files, so the
same rows give byte-identical files.

Rows are encoded on the caller's thread; the slow parts that release the GIL (Parquet compression, file
writes, hashing the JSONL bytes) run on one background thread, in order, a bounded number of steps behind.
"""

import hashlib
import json
import math
import queue
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from exports.schema import arrow_schema, columns_for

FORMATS = ("jsonl", "parquet")
ROW_GROUP_ROWS = 10_000
# Parquet rows wait as Python values for at most this many rows, then as Arrow arrays until their row group is full:
# few enough that they die in the garbage collector's young generations. (Held to the row group as lists and dicts,
# they reach the oldest generation, and every full collection walks them again.)
ARROW_BATCH_ROWS = 1000
# JSONL lines are written in batches of this many rows (a few MB).
JSONL_BATCH_ROWS = 1000
# Writes the background thread may have queued: what is held in memory beyond the current buffers.
PENDING_WRITES = 2


def _json_encoder() -> Callable[[Any], str]:
    """`json.dumps(value, ensure_ascii=False, separators=(",", ":"))` with the C encoder built once, not per row."""
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:
        return partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
    # What JSONEncoder.iterencode builds for each call, less the circular-reference check (rows are trees).
    encoder = make_encoder(
        None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda value: "".join(encoder(value, 0))


def _same_in_orjson(value: float) -> bool:
    """orjson writes this float as json.dumps does: finite, and 0 or at least 1e-4 in size (below it, orjson
    writes 0.00001 where json writes 1e-05)."""
    return value == 0 or 1e-4 <= abs(value) < math.inf


class _LineEncoder:
    """A row as one JSONL line in UTF-8: the bytes of `_json_encoder()`'s text, made by orjson (several times
    faster) whenever orjson writes the same bytes, which the tests check.

    orjson and json.dumps agree on every string, integer, boolean and null, and on floats that `_same_in_orjson`
    accepts; a row with another float (a temperature of 1e-05, a NaN) or a value orjson refuses takes json.
    """

    def __init__(self, float_columns: list[str]) -> None:
        self._floats = float_columns
        # Floats seen to agree: a few temperatures and margins, looked up by hash instead of checked each row.
        self._agreeing: set[float] = set()
        self._fallback = _json_encoder()

    def __call__(self, row: dict[str, Any]) -> bytes:
        if self._floats_agree(row):
            try:
                return orjson.dumps(row)
            except TypeError:  # e.g. an integer past 64 bits, which json writes
                pass
        return self._fallback(row).encode("utf-8")

    def _floats_agree(self, row: dict[str, Any]) -> bool:
        agreeing = self._agreeing
        for name in self._floats:
            value = row[name]
            if value is None or value in agreeing:
                continue
            if type(value) is not float or not _same_in_orjson(value):
                return False
            if len(agreeing) < 10_000:
                agreeing.add(value)
        return True


class _Background:
    """One thread that runs submitted calls in order.

    After a call fails the rest are skipped; its error is raised once, on the next submit or on close.
    """

    def __init__(self) -> None:
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=PENDING_WRITES)
        self._error: BaseException | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._run, name="export-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            if self._error is None:
                try:
                    call()
                except BaseException as error:  # raised on the caller's thread
                    self._error = error

    def submit(self, call: Callable[[], None]) -> None:
        self._raise()
        if self._error is None:
            self._calls.put(call)

    def close(self) -> None:
        """Wait for every submitted call; raise the error of the one that failed, if not raised yet."""
        if self._thread.is_alive():
            self._calls.put(None)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error


class _JsonlFile:
    """A JSONL file written in batches, hashed as it is written."""

    def __init__(self, path: Path) -> None:
        self.handle: IO[bytes] = path.open("wb")
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)


class SplitWriter:
    """Writes rows into `<directory>/<split>.<format>` for each requested format."""

    def __init__(self, directory: Path, formats: list[str], margin_scheme: str) -> None:
        self.directory = directory
        self.formats = formats
        self.names = [name for name, _ in columns_for(margin_scheme)]
        self.schema = arrow_schema(margin_scheme)
        self.rows: dict[str, int] = {}
        self._names = tuple(self.names)
        self._encode = _LineEncoder([field.name for field in self.schema if pa.types.is_floating(field.type)])
        self._jsonl: dict[str, _JsonlFile] = {}
        self._lines: dict[str, list[bytes]] = {}
        self._parquet: dict[str, pq.ParquetWriter] = {}
        # Each split's newest rows (their values in column order), and the Arrow batches of its next row group.
        self._pending: dict[str, list[list[Any]]] = {}
        self._batches: dict[str, list[pa.RecordBatch]] = {}
        # Parquet columns given dictionaries and min/max statistics: all but the messages' free text, where every
        # value is new (the writer would build a dictionary per page only to drop it) and min/max says nothing.
        self._indexed = [path for path in leaf_paths(self.schema) if not path.endswith(".content")]
        self._background: _Background | None = None

    def __enter__(self) -> "SplitWriter":
        self.directory.mkdir(parents=True, exist_ok=True)
        self._background = _Background()
        return self

    def write(self, row: dict[str, Any]) -> None:
        split = row["split"]
        # Rows built in the schema's order (as exports.rows builds them) are written as they are.
        ordered = row if tuple(row) == self._names else {name: row[name] for name in self.names}
        self.rows[split] = self.rows.get(split, 0) + 1
        if "jsonl" in self.formats:
            lines = self._lines.get(split)
            if lines is None:
                self._jsonl[split] = _JsonlFile(self.directory / f"{split}.jsonl")
                lines = self._lines[split] = []
            lines.append(self._encode(ordered))
            if len(lines) >= JSONL_BATCH_ROWS:
                self._flush_jsonl(split)
        if "parquet" in self.formats:
            pending = self._pending.get(split)
            if pending is None:
                pending = self._pending[split] = []
            pending.append(list(ordered.values()))
            if len(pending) >= ARROW_BATCH_ROWS:
                self._to_arrow(split)

    def _submit(self, call: Callable[[], None]) -> None:
        if self._background is None:
            call()
        else:
            self._background.submit(call)

    def _flush_jsonl(self, split: str) -> None:
        lines = self._lines.get(split)
        if not lines:
            return
        lines.append(b"")
        self._submit(partial(self._jsonl[split].write, b"\n".join(lines)))
        self._lines[split] = []

    def _to_arrow(self, split: str) -> None:
        """The split's pending rows as one Arrow batch; a full row group goes to the file."""
        rows = self._pending.pop(split, None)
        if rows:
            # What Table.from_pylist(rows, schema=...) gives, in about two thirds of its time: one sequence per column,
            # which pa.array converts in C++ (messages included).
            columns = zip(*rows, strict=True)
            arrays = [pa.array(column, type=field.type) for column, field in zip(columns, self.schema, strict=True)]
            self._batches.setdefault(split, []).append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        if sum(batch.num_rows for batch in self._batches.get(split, ())) >= ROW_GROUP_ROWS:
            self._flush(split)

    def _flush(self, split: str) -> None:
        batches = self._batches.pop(split, None)
        if not batches:
            return
        if split not in self._parquet:
            self._parquet[split] = pq.ParquetWriter(
                self.directory / f"{split}.parquet",
                self.schema,
                compression="zstd",
                use_dictionary=self._indexed,
                write_statistics=self._indexed,
            )
        table = pa.Table.from_batches(batches, schema=self.schema)
        self._submit(partial(self._parquet[split].write_table, table, row_group_size=ROW_GROUP_ROWS))

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            for split in list(self._lines):
                self._flush_jsonl(split)
            for split in list(self._pending):
                self._to_arrow(split)
            for split in list(self._batches):
                self._flush(split)
        finally:
            background, self._background = self._background, None
            try:
                if background is not None:
                    background.close()
            finally:
                for jsonl in self._jsonl.values():
                    jsonl.handle.close()
                for writer in self._parquet.values():
                    writer.close()

    def files(self) -> list[dict[str, Any]]:
        """Every file written, with its split, format, row count, size and sha256."""
        described = []
        for fmt in self.formats:
            for split in sorted(self.rows):
                path = self.directory / f"{split}.{fmt}"
                jsonl = self._jsonl.get(split) if fmt == "jsonl" else None
                described.append(
                    {
                        "name": path.name,
                        "format": fmt,
                        "split": split,
                        "rows": self.rows[split],
                        "bytes": path.stat().st_size,
                        "sha256": jsonl.digest.hexdigest() if jsonl is not None else file_sha256(path),
                    }
                )
        return described


def leaf_paths(schema: pa.Schema) -> list[str]:
    """The dotted paths of a schema's Parquet leaf columns, as `use_dictionary` and `write_statistics` name them."""

    def paths(name: str, kind: pa.DataType) -> list[str]:
        if pa.types.is_list(kind):
            return paths(f"{name}.list.element", kind.value_type)
        if pa.types.is_struct(kind):
            return [path for child in kind for path in paths(f"{name}.{child.name}", child.type)]
        return [name]

    return [path for field in schema for path in paths(field.name, field.type)]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
