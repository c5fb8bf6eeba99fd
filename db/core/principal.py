"""Who is asking: the authenticated user as services see it (no Flask in here)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    id: uuid.UUID
    role: str
    username: str = ""

    @property
    def sees_everything(self) -> bool:
        """finance and admin act on every account; customers only on their own."""
        return self.role in ("finance", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
