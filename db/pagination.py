"""Keyset pagination: opaque cursors (clients must not parse them) and `KeysetPage`, the
one page request every list endpoint gets from `@blp.keyset_page` (api/extensions/smorest.py).

A repository's list query takes `after` (the decoded cursor: the last position the
client saw) and `limit`, and fetches `limit + 1` rows; `KeysetPage.of` trims the extra
row and turns the last position into `next_cursor`."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from db.core.errors import ValidationFailed

T = TypeVar("T")


def encode_cursor(position: int | str | uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"v1:{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, parse: Callable[[str], T]) -> T | None:
    """The position inside a cursor, parsed by `parse` (int, uuid.UUID, ...)."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, position = raw.partition(":")
        if version != "v1":
            raise ValueError(version)
        parsed = parse(position)
        if isinstance(parsed, int) and not -(2**63) <= parsed < 2**63:
            raise ValueError(position)  # no BIGINT key is there: a forged cursor
        return parsed
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed.field("cursor", "is not a cursor this API issued") from None


def page(rows: list[T], limit: int, position_of: Callable[[T], object]) -> tuple[list[T], str | None]:
    """Rows were fetched with limit+1: trim and compute the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(position_of(rows[-1]))  # type: ignore[arg-type]
    return rows, None


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    """One page request: `limit` (already capped) and `after` (the cursor's position, or
    None for the first page). `position_of` reads a row's position for the next cursor."""

    limit: int
    after: Any
    position_of: Callable[[Any], object]

    def of(self, rows: Sequence[Any], items: Callable[[list], list] | None = None) -> dict[str, Any]:
        """The response body: the page's items (`items` maps the trimmed rows, e.g. to
        views) and `next_cursor` (None on the last page)."""
        trimmed, next_cursor = page(list(rows), self.limit, self.position_of)
        return {"items": items(trimmed) if items else trimmed, "next_cursor": next_cursor}
