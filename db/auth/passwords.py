"""The password policy: at least MIN_PASSWORD_LENGTH characters, not a common password
(or one with digits and symbols stuck on, or in leetspeak), not a repetition, a
sequence or a keyboard run, not the username or email, and at least MIN_PASSWORD_BITS of
estimated entropy. Passphrases of a few words pass; "password1234" and "aaaaaaaaaaaa" do not."""

from __future__ import annotations

from db.core.entropy import strength_bits

MIN_PASSWORD_LENGTH = 12
MIN_PASSWORD_BITS = 40
_LEET = str.maketrans("0134578@$!|", "oieastbasil")
_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890", "qwertzuiop", "azertyuiop")
# The most common passwords and their stems (the core left once digits and symbols
# around the letters are removed): SecLists' top lists agree on these.
COMMON = frozenset(
    [
        "password",
        "passw0rd",
        "passwort",
        "motdepasse",
        "contrasena",
        "iloveyou",
        "princess",
        "rockyou",
        "abc",
        "letmein",
        "welcome",
        "welcome1",
        "admin",
        "administrator",
        "root",
        "toor",
        "login",
        "master",
        "monkey",
        "dragon",
        "football",
        "baseball",
        "soccer",
        "hockey",
        "basketball",
        "superman",
        "batman",
        "spiderman",
        "trustno",
        "shadow",
        "sunshine",
        "qwerty",
        "qwertyuiop",
        "asdfgh",
        "asdfghjkl",
        "zxcvbnm",
        "azerty",
        "qazwsx",
        "mypassword",
        "secret",
        "secretpassword",
        "changeme",
        "default",
        "guest",
        "test",
        "tester",
        "testing",
        "user",
        "username",
        "access",
        "freedom",
        "whatever",
        "michael",
        "jennifer",
        "jordan",
        "hunter",
        "harley",
        "ranger",
        "buster",
        "thomas",
        "charlie",
        "daniel",
        "andrew",
        "jessica",
        "ashley",
        "nicole",
        "michelle",
        "hannah",
        "samantha",
        "matthew",
        "joshua",
        "computer",
        "internet",
        "starwars",
        "pokemon",
        "minecraft",
        "killer",
        "lovely",
        "loveme",
        "iloveu",
        "babygirl",
        "chocolate",
        "cookie",
        "summer",
        "winter",
        "spring",
        "autumn",
        "flower",
        "purple",
        "orange",
        "banana",
        "apple",
        "cheese",
        "pepper",
        "ginger",
        "maggie",
        "tigger",
        "bailey",
        "ginger",
        "hello",
        "helloworld",
        "goodbye",
        "money",
        "blessed",
        "jesus",
        "christ",
        "angel",
        "angels",
        "forever",
        "fuckyou",
        "fuckoff",
        "ledgerq",
        "ledger",
        "bank",
        "banking",
        "finance",
    ]
)


def password_problem(password: str, *, username: str = "", email: str = "") -> str | None:
    """Why `password` is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    lowered = password.lower()
    core = "".join(ch for ch in lowered.translate(_LEET) if ch.isalpha())
    if lowered in COMMON or core in COMMON or lowered.strip("0123456789!@#$%^&*.?_- ") in COMMON:
        return "is a common password"
    for who in (username.lower(), email.lower(), email.lower().split("@")[0]):
        if len(who) >= 3 and who in lowered:
            return "must not contain your username or email"
    for unit in range(1, len(password) // 2 + 1):
        if len(password) % unit == 0 and password == password[:unit] * (len(password) // unit):
            return "must not be one thing repeated"
    steps = [ord(b) - ord(a) for a, b in zip(lowered, lowered[1:], strict=False)]
    if sum(step in (-1, 0, 1) for step in steps) * 2 >= len(steps):
        return "must not be a sequence of neighbouring characters"
    if any(row[i : i + 6] in lowered for row in _KEYBOARD_ROWS for i in range(len(row) - 5)):
        return "must not contain a keyboard run"
    if strength_bits(password) < MIN_PASSWORD_BITS:
        return "is too easy to guess: use a few unrelated words or a password manager"
    return None
