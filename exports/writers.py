"""Writing rows to one file per split and format: JSONL lines and Parquet row groups. No Django here.

Output is deterministic: keys and columns in the schema's order, no timestamps in the files, so the
same rows give byte-identical files.
"""

import hashlib
import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from exports.schema import arrow_schema, columns_for

FORMATS = ("jsonl", "parquet")
ROW_GROUP_ROWS = 10_000


class SplitWriter:
    """Writes rows into `<directory>/<split>.<format>` for each requested format."""

    def __init__(self, directory: Path, formats: list[str], margin_scheme: str) -> None:
        self.directory = directory
        self.formats = formats
        self.names = [name for name, _ in columns_for(margin_scheme)]
        self.schema = arrow_schema(margin_scheme)
        self.rows: dict[str, int] = {}
        self._jsonl: dict[str, IO[str]] = {}
        self._parquet: dict[str, pq.ParquetWriter] = {}
        self._buffers: dict[str, list[dict[str, Any]]] = {}

    def __enter__(self) -> "SplitWriter":
        self.directory.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, row: dict[str, Any]) -> None:
        split = row["split"]
        ordered = {name: row[name] for name in self.names}
        self.rows[split] = self.rows.get(split, 0) + 1
        if "jsonl" in self.formats:
            if split not in self._jsonl:
                self._jsonl[split] = (self.directory / f"{split}.jsonl").open("w", encoding="utf-8", newline="\n")
            self._jsonl[split].write(json.dumps(ordered, ensure_ascii=False, separators=(",", ":")) + "\n")
        if "parquet" in self.formats:
            buffer = self._buffers.setdefault(split, [])
            buffer.append(ordered)
            if len(buffer) >= ROW_GROUP_ROWS:
                self._flush(split)

    def _flush(self, split: str) -> None:
        buffer = self._buffers.get(split)
        if not buffer:
            return
        if split not in self._parquet:
            self._parquet[split] = pq.ParquetWriter(
                self.directory / f"{split}.parquet", self.schema, compression="zstd", write_statistics=True
            )
        self._parquet[split].write_table(pa.Table.from_pylist(buffer, schema=self.schema))
        self._buffers[split] = []

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for split in list(self._buffers):
            self._flush(split)
        for handle in self._jsonl.values():
            handle.close()
        for writer in self._parquet.values():
            writer.close()

    def files(self) -> list[dict[str, Any]]:
        """Every file written, with its split, format, row count, size and sha256."""
        described = []
        for fmt in self.formats:
            for split in sorted(self.rows):
                path = self.directory / f"{split}.{fmt}"
                described.append(
                    {
                        "name": path.name,
                        "format": fmt,
                        "split": split,
                        "rows": self.rows[split],
                        "bytes": path.stat().st_size,
                        "sha256": file_sha256(path),
                    }
                )
        return described


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
