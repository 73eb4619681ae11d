"""Streaming readers of import files (CSV, Parquet): batches of rows with the line each came from."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

from decision_server.errors import ImportFileError

# A read row: its line, its cells (None when unreadable) and the problems found so far, as
# (column, reason). Cells end with one extra None that absent optional columns point at.
Row = tuple[int, Sequence[Any] | None, list[tuple[str, str]]]
WHOLE_ROW = "(row)"  # the "column" of a problem with the row as a whole


def open_source(path: Path, fmt: str | None) -> CsvSource | ParquetSource:
    """Open a file as `fmt`, or as its extension says; raise ImportFileError if that fails."""
    if fmt is None:
        fmt = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
        if fmt is None:
            raise ImportFileError(
                f"cannot tell the format of {path.name} from its extension: name it .csv or "
                ".parquet, or give the format (--format csv|parquet)"
            )
    if fmt not in ("csv", "parquet"):
        raise ImportFileError(f"unknown file format {fmt!r}: use csv or parquet")
    try:
        return CsvSource(path) if fmt == "csv" else ParquetSource(path)
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None


class CsvSource:
    """A UTF-8 CSV file with a header line; a row's line is the physical line it starts on."""

    def __init__(self, path: Path):
        self.total = os.path.getsize(path)
        self.unit = "bytes"
        self._binary = open(path, "rb")
        # surrogateescape reads on past bytes that are not UTF-8: the rows holding them are
        # refused one by one instead of the whole file failing at the first one.
        text = io.TextIOWrapper(self._binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        self._reader = csv.reader(text)
        try:
            header = next(self._reader)
        except StopIteration:
            self.close()
            raise ImportFileError(f"{path.name} is empty: its first line must name the columns") from None
        except csv.Error as exc:
            self.close()
            raise ImportFileError(f"{path.name}: the header line is not valid CSV: {exc}") from None
        if _undecodable(header) is not None:
            self.close()
            raise ImportFileError(f"{path.name}: the header line is not UTF-8 text")
        self.columns = [name.strip() for name in header]

    def position(self) -> int:
        """Return how many bytes were read so far."""
        return self._binary.tell()

    def batches(self, size: int) -> Iterator[list[Row]]:
        """Yield the rows in lists of `size`; blank lines are skipped."""
        reader, width, columns = self._reader, len(self.columns), self.columns
        batch: list[Row] = []
        end = reader.line_num
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                batch.append((start, None, [(WHOLE_ROW, f"not valid CSV: {exc}")]))
            else:
                if len(cells) == width and all(map(str.isascii, cells)):
                    cells.append(None)
                    batch.append((start, cells, []))
                elif not cells:  # a blank line
                    end = reader.line_num
                    continue
                elif len(cells) != width:
                    problem = f"{len(cells)} fields where the header names {width}"
                    batch.append((start, None, [(WHOLE_ROW, problem)]))
                elif (at := _undecodable(cells)) is not None:
                    batch.append((start, None, [(columns[at], "not valid UTF-8 text")]))
                else:
                    cells.append(None)
                    batch.append((start, cells, []))
            end = reader.line_num
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        """Close the file."""
        self._binary.close()


def _undecodable(cells: Sequence[str]) -> int | None:
    for i, cell in enumerate(cells):
        if not cell.isascii():
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                return i
    return None


class ParquetSource:
    """A Parquet file read in record batches; a row's line is its 1-based row number."""

    def __init__(self, path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            self._file = pq.ParquetFile(path)
        except pa.ArrowException as exc:
            raise ImportFileError(f"{path.name} is not a readable Parquet file: {exc}") from None
        self.columns = list(self._file.schema_arrow.names)
        self.total = self._file.metadata.num_rows
        self.unit = "rows"
        self._done = 0

    def position(self) -> int:
        """Return how many rows were read so far."""
        return self._done

    def batches(self, size: int) -> Iterator[list[Row]]:
        """Yield the rows in lists of `size`, cells as Python values (str, float, datetime...)."""
        for record_batch in self._file.iter_batches(batch_size=size):
            values = [column.to_pylist() for column in record_batch.columns]
            first = self._done + 1
            self._done += record_batch.num_rows
            yield [(first + i, cells, []) for i, cells in enumerate(zip(*values, repeat(None)))]

    def close(self) -> None:
        """Close the file."""
        self._file.close()
