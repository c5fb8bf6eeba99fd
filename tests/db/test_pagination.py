"""db/pagination.py: the cursor round trip and `KeysetPage.of`, which every list endpoint
answers with (through `@blp.keyset_page`)."""

from __future__ import annotations

import uuid

import pytest

from db.core.errors import ValidationFailed
from db.pagination import KeysetPage, decode_cursor, encode_cursor


@pytest.mark.parametrize(("position", "parse"), [(42, int), (uuid.uuid4(), uuid.UUID)])
def test_a_cursor_decodes_to_its_position(position, parse):
    assert decode_cursor(encode_cursor(position), parse) == position


@pytest.mark.parametrize("cursor", ["not-a-cursor", encode_cursor("x")])
def test_a_foreign_cursor_is_a_validation_error(cursor):
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor, int)


def test_no_cursor_is_the_first_page():
    assert decode_cursor(None, int) is None
    assert decode_cursor("", int) is None


def test_a_full_page_is_trimmed_and_points_at_its_last_row():
    page = KeysetPage(limit=3, after=None, position_of=lambda row: row)
    body = page.of([10, 9, 8, 7])  # the repository fetched limit + 1
    assert body["items"] == [10, 9, 8]
    assert decode_cursor(body["next_cursor"], int) == 8


def test_the_last_page_has_no_next_cursor():
    page = KeysetPage(limit=3, after=None, position_of=lambda row: row)
    assert page.of([2, 1]) == {"items": [2, 1], "next_cursor": None}


def test_items_maps_only_the_rows_of_the_page():
    seen = []

    def items(rows):
        seen.extend(rows)
        return [str(row) for row in rows]

    page = KeysetPage(limit=2, after=None, position_of=lambda row: row)
    assert page.of([5, 4, 3], items)["items"] == ["5", "4"]
    assert seen == [5, 4]
