"""The append-only audit log: writing a row in the caller's transaction (`repository`)
and reading it back (`reads`)."""
