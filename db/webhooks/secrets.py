"""Webhook signing secrets: generated here, shown once, stored Fernet-encrypted.

A hash would not do: the server must sign with the secret itself. The key comes from
`WEBHOOK_SECRET_KEY`, or is derived from `JWT_SECRET` (HKDF) so a development stack
works with no extra setting; a dedicated key lets the two be rotated apart.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from db.core.config import Settings

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _fernet(settings: Settings) -> Fernet:
    material = (settings.webhook_secret_key or settings.jwt_secret).encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ledgerq webhook secrets").derive(
        material
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(settings: Settings, secret: str) -> bytes:
    return _fernet(settings).encrypt(secret.encode())


def decrypt(settings: Settings, token: bytes) -> str:
    return _fernet(settings).decrypt(bytes(token)).decode()
