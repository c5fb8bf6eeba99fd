"""The append-only audit log (`repository`: writing a row, reading the log)."""
