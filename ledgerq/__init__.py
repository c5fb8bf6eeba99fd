"""Client-side helpers for ledgerq users (standard library only)."""
