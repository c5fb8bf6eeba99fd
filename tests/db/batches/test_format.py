"""The batch CSV format on its own (pure functions, no database)."""

from __future__ import annotations

import pytest

from db.batches.format import FileRejected, UploadScan, csv_records, physical_lines

HEADER = b"from_account_id,to_account_id,amount,currency,reference"


def records(data: bytes, *, chunk: int = 7, max_line: int = 200):
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return list(csv_records(pieces, max_line))


def scan(data: bytes, *, max_bytes=10_000, max_lines=100, max_line=200) -> str:
    scanner = UploadScan(max_bytes, max_lines, max_line)
    for i in range(0, len(data), 5):
        scanner.feed(data[i : i + 5])
    return scanner.finish()


@pytest.mark.parametrize("chunk", [1, 2, 3, 64, 10_000])
def test_bom_crlf_and_quoted_commas_whatever_the_chunking(chunk):
    data = (
        b"\xef\xbb\xbf" + HEADER + b'\r\na,b,1.00,USD,"ref, with comma"\r\n\r\n"c","d",2,USD,"say ""hi"""\r\n'
    )
    parsed = records(data, chunk=chunk)
    assert [r.line for r in parsed] == [2, 4]
    assert parsed[0].fields == {
        "from_account_id": "a",
        "to_account_id": "b",
        "amount": "1.00",
        "currency": "USD",
        "reference": "ref, with comma",
    }
    assert parsed[1].fields["reference"] == 'say "hi"'


def test_columns_in_any_order_and_reference_optional():
    parsed = records(b"currency,amount,to_account_id,from_account_id\nUSD,3,b,a\n")
    assert parsed[0].fields == {
        "currency": "USD",
        "amount": "3",
        "to_account_id": "b",
        "from_account_id": "a",
    }


def test_a_broken_line_is_rejected_alone():
    data = HEADER + b'\na,b,1,USD,"unterminated\na,b,2,USD,ok\na,b,\xff\xfe,USD,x\na,b,3\n'
    parsed = records(data)
    assert [(r.line, r.code) for r in parsed] == [
        (2, "malformed_csv"),
        (3, None),
        (4, "invalid_encoding"),
        (5, "wrong_field_count"),
    ]
    assert parsed[2].reason.startswith("not UTF-8")


def test_an_overlong_line_is_dropped_while_streaming():
    long_line = b"a,b,1,USD," + b"x" * 5_000_000
    parsed = records(HEADER + b"\nq,w,1,USD,r1\n" + long_line + b"\nq,w,2,USD,r2", chunk=65536, max_line=4096)
    assert [(r.line, r.code) for r in parsed] == [(2, None), (3, "line_too_long"), (4, None)]


def test_physical_lines_count_every_line():
    assert list(physical_lines([b"a\n\nb\r\n", b"c"], 10)) == [(1, b"a"), (2, b""), (3, b"b"), (4, b"c")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (HEADER + b"\n", "no lines"),
        (HEADER + b"\r\n\r\n  \r\n", "no lines"),
        (HEADER, "no lines"),
        (b"\nfrom_account_id,to_account_id,amount,currency\n", "first line must be the header"),
        (b"from,to,amount,currency\nx,y,1,USD\n", "wrong column set"),
        (b"from_account_id,to_account_id,amount,currency,amount\nx\n", "repeats"),
        (b"\xff\xfef\x00r\x00", "UTF-16"),
        (b"\x80\x81,to_account_id\nx\n", "not UTF-8"),
    ],
)
def test_files_that_cannot_be_a_batch(data, message):
    with pytest.raises(FileRejected, match=message):
        scan(data)


def test_limits_name_the_limit():
    with pytest.raises(FileRejected, match="limit of 100 bytes") as too_big:
        scan(HEADER + b"\n" + b"a,b,1,USD,x\n" * 10, max_bytes=100)
    assert too_big.value.too_large
    with pytest.raises(FileRejected, match="limit of 3 lines") as too_many:
        scan(HEADER + b"\n" + b"a,b,1,USD,x\n" * 4, max_lines=3)
    assert too_many.value.too_large
    assert len(scan(HEADER + b"\n" + b"a,b,1,USD,x\n" * 3, max_lines=3)) == 64
