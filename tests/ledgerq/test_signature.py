"""`ledgerq.webhooks.verify_signature`, the helper receivers use."""

from __future__ import annotations

from ledgerq.webhooks import sign, verify_signature

SECRET = "whsec_test"
BODY = b'{"id":"e1","type":"transaction.completed"}'


def test_a_signature_made_with_the_secret_verifies_within_the_tolerance():
    header = sign(SECRET, BODY, timestamp=1_000_000)
    assert header.startswith("t=1000000,v1=")
    assert verify_signature(SECRET, header, BODY, now=1_000_000 + 299)


def test_a_tampered_body_another_secret_or_an_old_timestamp_fails():
    header = sign(SECRET, BODY, timestamp=1_000_000)
    assert not verify_signature(SECRET, header, BODY.replace(b"e1", b"e2"), now=1_000_000)
    assert not verify_signature("whsec_other", header, BODY, now=1_000_000)
    assert not verify_signature(SECRET, header, BODY, now=1_000_000 + 301)  # a replay, later
    forged = header.replace("t=1000000", "t=1000300")  # a fresh timestamp on an old signature
    assert not verify_signature(SECRET, forged, BODY, now=1_000_300)


def test_malformed_headers_fail_and_any_v1_may_match_during_a_rotation():
    assert not verify_signature(SECRET, "", BODY)
    assert not verify_signature(SECRET, "v1=abc", BODY)
    assert not verify_signature(SECRET, "t=abc,v1=abc", BODY)
    good = sign(SECRET, BODY, timestamp=5).split("v1=")[1]
    assert verify_signature(SECRET, f"t=5,v1=deadbeef,v1={good}", BODY, now=5)
