"""Registration does not tell which usernames or emails exist, and refuses guessable
passwords (a common-password blocklist and an entropy estimate), not only short ones."""

from __future__ import annotations

import pytest

from tests.fixtures.http import assert_error
from tests.fixtures.ledger import sql

REGISTER = "/api/v1/auth/register"


def test_a_taken_username_or_email_gets_one_answer_that_names_neither(client):
    first = {"username": "dora", "email": "dora@example.com", "password": "k3!v9xZp_Lm2Rt8"}
    assert client.post(REGISTER, json=first).status_code == 201
    answers = [
        client.post(REGISTER, json={**first, "email": "other@example.com"}),
        client.post(REGISTER, json={**first, "username": "someone-else"}),
        client.post(REGISTER, json={**first, "username": "DORA", "email": "x@example.com"}),
        client.post(REGISTER, json=first),
    ]
    bodies = {
        (r.status_code, r.json["error"]["code"], r.json["error"]["message"], str(r.json["error"]["details"]))
        for r in answers
    }
    assert len(bodies) == 1, bodies
    ((status, code, message, details),) = bodies
    assert (status, code, details) == (409, "conflict", "{}")
    assert message == "This username or email is not available; choose another or log in."
    assert sql("SELECT count(*) FROM users")[0][0] == 1


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaaaa",
        " " * 12,
        "password1234",
        "Password1234!",
        "123456789012",
        "qwertyqwerty",
        "abcabcabcabc",
        "iloveyou1234",
        "dora@example.com",
    ],
)
def test_guessable_passwords_are_refused(client, password):
    response = client.post(
        REGISTER, json={"username": "dora", "email": "dora@example.com", "password": password}
    )
    assert_error(response, 422, "validation_error")
    assert "password" in response.json["error"]["details"]
    assert sql("SELECT count(*) FROM users")[0][0] == 0


@pytest.mark.parametrize("password", ["correct horse battery", "k3!v9xZp_Lm2Rt8", "long enough pw!"])
def test_passphrases_and_random_passwords_are_accepted(client, password):
    response = client.post(
        REGISTER, json={"username": "dora", "email": "dora@example.com", "password": password}
    )
    assert response.status_code == 201, response.json


def test_a_password_change_is_held_to_the_same_policy(client, make):
    from tests.fixtures.http import login

    alice = make.user()
    token = login(client, alice.username)["access_token"]
    response = client.put(
        f"/api/v1/users/{alice.id}",
        json={"password": "password1234", "current_password": alice.password},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_error(response, 422, "validation_error")
