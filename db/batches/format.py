"""The batch file format: bytes in, one record per line out. Pure: no database.

A batch file is UTF-8 CSV (optional BOM, LF or CRLF) whose first line is the header
`from_account_id,to_account_id,amount,currency,reference` (any order; `reference` may
be left out). Every later line is one record: quoted fields may contain commas and
doubled quotes, but a record never spans lines, so one broken line (an unterminated
quote, bytes that are not UTF-8, a 10 MB line) is rejected on its own and never
swallows the lines after it. Blank lines are skipped.

Everything here streams: files arrive as an iterator of byte chunks and no more than
one line (at most `max_line_bytes`) is held at a time, so a million-line file costs
the same memory as a ten-line one.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("from_account_id", "to_account_id", "amount", "currency", "reference")
REQUIRED_COLUMNS = ("from_account_id", "to_account_id", "amount", "currency")
UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A cell (after a line break or comma, optionally quoted) that starts a formula.
# Conservative: a comma inside a quoted cell counts as a separator here.
_FORMULA_CELL = re.compile(rb'[\n,]"?[=+@\t\r](?!\n)')
# Raw values echoed back for a rejected line are cut to this many characters.
RAW_ECHO_CHARS = 255


class FileRejected(Exception):
    """The file as a whole cannot be a batch (no header, wrong columns, not UTF-8 text,
    empty, over a limit). Line-level problems are never this: they are rejected lines."""

    def __init__(self, message: str, *, too_large: bool = False, summary: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large
        # The message without anything quoted from the file, for places the file's
        # uploader may not be the reader (the inbox's rejected/*.error.txt, logs).
        self.summary = summary or message


@dataclass(slots=True)
class Record:
    """One non-blank input line: its fields by column, or why it could not be read."""

    line: int
    fields: dict[str, str] | None = None
    code: str | None = None
    reason: str | None = None
    raw: dict[str, Any] | None = None


def _clip(text: str) -> str:
    return text if len(text) <= RAW_ECHO_CHARS else text[: RAW_ECHO_CHARS - 1] + "…"


def parse_header(raw: bytes) -> tuple[str, ...]:
    """The column order of the file, or FileRejected saying what is wrong with it."""
    if raw.startswith(_UTF16_BOMS):
        raise FileRejected("the file is UTF-16; save it as UTF-8 (CSV UTF-8)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FileRejected("the header line is not UTF-8 text") from None
    try:
        columns = tuple(c.strip().lower() for c in next(csv.reader([text], strict=True)))
    except (csv.Error, StopIteration):
        raise FileRejected("the header line is not valid CSV") from None
    expected = ",".join(COLUMNS)
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise FileRejected(
            f"the header repeats column(s) {', '.join(duplicated)}; expected {expected}",
            summary=f"wrong column set (a column is repeated); expected header {expected}",
        )
    unknown = [c for c in columns if c not in COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if unknown or missing:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(repr(c) for c in unknown)}")
        raise FileRejected(
            f"wrong column set ({'; '.join(problems)}); expected header {expected}",
            summary=f"wrong column set; expected header {expected}",
        )
    return columns


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    stream = iter(chunks)
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= len(UTF8_BOM):
            break
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
    if head:
        yield head
    yield from stream


def physical_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its line break) for every line of the stream; None
    instead of the bytes for a line longer than `max_line_bytes`, whose bytes are
    dropped as they stream past. A UTF-8 BOM at the very start is removed."""
    line_no = 0
    tail = b""  # the current, not yet terminated line
    overlong = False  # the current line is over the limit: its bytes are being dropped
    for chunk in _without_bom(chunks):
        parts = chunk.split(b"\n")
        last = parts.pop()
        for index, part in enumerate(parts):
            line_no += 1
            if index == 0:
                if overlong:
                    overlong = False
                    yield line_no, None
                    continue
                part, tail = tail + part, b""
            if part.endswith(b"\r"):
                part = part[:-1]
            yield line_no, (part if len(part) <= max_line_bytes else None)
        if parts:
            tail = last
        elif not overlong:
            tail += last
        if not overlong and len(tail) > max_line_bytes + 1:  # +1: a CR may still be stripped
            overlong, tail = True, b""
    if overlong:
        yield line_no + 1, None
    elif tail:
        tail = tail[:-1] if tail.endswith(b"\r") else tail
        yield line_no + 1, (tail if len(tail) <= max_line_bytes else None)


def split_line(text: str) -> list[str]:
    """Fields of one CSV line (csv.Error for malformed quoting)."""
    if '"' not in text:
        return text.split(",")  # the common case, ten times faster than the csv module
    return next(csv.reader([text], strict=True))


def csv_records(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[Record]:
    """Every non-blank line after the header as a Record (FileRejected for a file
    without a usable header, raised before the first record)."""
    lines = physical_lines(chunks, max_line_bytes)
    first = next(lines, None)
    if first is None:
        raise FileRejected("the file is empty")
    if first[1] is None:
        raise FileRejected(f"the header line is longer than {max_line_bytes} bytes")
    if not first[1].strip():
        raise FileRejected("the first line must be the header " + ",".join(COLUMNS))
    columns = parse_header(first[1])
    width = len(columns)
    for line_no, raw in lines:
        if raw is None:
            yield Record(
                line_no,
                code="line_too_long",
                reason=f"the line is longer than {max_line_bytes} bytes (LEDGERQ_BATCH_MAX_LINE_BYTES)",
            )
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Record(
                line_no,
                code="invalid_encoding",
                reason=f"not UTF-8: byte 0x{raw[exc.start]:02x} at position {exc.start + 1}",
                raw={"line": _clip(raw.decode("utf-8", errors="replace"))},
            )
            continue
        if not text.strip():
            continue
        try:
            values = split_line(text)
        except csv.Error as exc:
            yield Record(
                line_no, code="malformed_csv", reason=f"malformed CSV: {exc}", raw={"line": _clip(text)}
            )
            continue
        if len(values) != width:
            yield Record(
                line_no,
                code="wrong_field_count",
                reason=f"expected {width} fields ({','.join(columns)}), found {len(values)}",
                raw={"line": _clip(text)},
            )
            continue
        yield Record(
            line_no, fields={name: value.strip() for name, value in zip(columns, values, strict=True)}
        )


def json_records(items: list[Any]) -> Iterator[Record]:
    """JSON items as Records numbered from 1 (the item's position in the list)."""
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            yield Record(index, code="malformed_item", reason="each item must be a JSON object")
            continue
        unknown = sorted(set(item) - set(COLUMNS))
        if unknown:
            yield Record(
                index,
                code="wrong_field_count",
                reason=f"unknown field(s) {', '.join(unknown)}; expected {', '.join(COLUMNS)}",
                raw={k: _clip(str(v)) for k, v in item.items() if k in COLUMNS},
            )
            continue
        fields: dict[str, str] = {}
        problem = None
        for name in COLUMNS:
            value = item.get(name)
            if value is None:
                value = ""
            if not isinstance(value, str):
                problem = (
                    f'{name}: must be a decimal string such as "10.50", not a JSON number'
                    if name == "amount"
                    else f"{name}: must be a string"
                )
                break
            fields[name] = value.strip()
        if problem:
            raw = {k: _clip(str(v)) for k, v in item.items() if k in COLUMNS}
            yield Record(
                index,
                code="invalid_amount" if problem.startswith("amount") else "malformed_item",
                reason=problem,
                raw=raw,
            )
            continue
        yield Record(index, fields=fields)


@dataclass
class UploadScan:
    """What one streaming pass over an upload learns before anything is recorded."""

    max_bytes: int
    max_lines: int
    max_line_bytes: int
    sha256: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    newlines: int = 0
    _head: bytes = b""
    _header_done: bool = False
    has_data: bool = False
    _last_byte: bytes = b""

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise FileRejected(
                f"the file is larger than the limit of {self.max_bytes} bytes (LEDGERQ_BATCH_MAX_BYTES)",
                too_large=True,
            )
        self._refuse_formulas(chunk)
        if b"\x00" in chunk:
            # Not CSV text (PostgreSQL text cannot hold NUL either): the whole file is refused.
            if self.size == len(chunk) and chunk.startswith(_UTF16_BOMS):
                parse_header(chunk)  # says "UTF-16; save it as UTF-8"
            raise FileRejected("the file contains NUL bytes; it is not a CSV text file")
        self.sha256.update(chunk)
        self.newlines += chunk.count(b"\n")
        self._last_byte = chunk[-1:]
        if not self._header_done:
            self._head += chunk
            cut = self._head.find(b"\n")
            if cut < 0:
                if len(self._head) > self.max_line_bytes + len(UTF8_BOM) + 1:
                    raise FileRejected(f"the header line is longer than {self.max_line_bytes} bytes")
                return
            self._header_done = True
            self._head, chunk = self._head[:cut], self._head[cut + 1 :]
        if not self.has_data and chunk.strip():
            self.has_data = True
        if self.lines > self.max_lines:
            raise FileRejected(
                f"the file has more than the limit of {self.max_lines} lines (LEDGERQ_BATCH_MAX_LINES)",
                too_large=True,
            )

    def _refuse_formulas(self, chunk: bytes) -> None:
        """A cell starting with = + @ (or a tab or CR) is a spreadsheet formula: the file
        is refused, so no batch, result file or report ever carries one (CSV injection).
        Amounts never start so, and a reference has no need to."""
        text = (self._last_byte or b"\n") + chunk  # the file's start is a line start
        match = _FORMULA_CELL.search(text)
        if match:
            line = self.newlines + chunk.count(b"\n", 0, match.start()) + 1
            raise FileRejected(
                f"line {line}: a cell starts with =, +, @, a tab or a carriage return (a spreadsheet "
                "formula); remove it",
                summary="a cell starts with a spreadsheet formula character",
            )

    @property
    def lines(self) -> int:
        """Data lines (physical lines after the header, blank ones included)."""
        total = self.newlines + (1 if self._last_byte not in (b"", b"\n") else 0)
        return max(0, total - 1)

    def finish(self) -> str:
        """Check what only the whole file tells; return its SHA-256 (hex)."""
        if self.size == 0:
            raise FileRejected("the file is empty")
        head = self._head[len(UTF8_BOM) :] if self._head.startswith(UTF8_BOM) else self._head
        first_line = head.rstrip(b"\r")
        if not first_line.strip():
            raise FileRejected("the first line must be the header " + ",".join(COLUMNS))
        parse_header(first_line)
        if not self.has_data:
            raise FileRejected("the file has a header but no lines")
        return self.sha256.hexdigest()
