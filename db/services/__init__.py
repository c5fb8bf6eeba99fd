"""Business logic shared by the API, the scheduler and the CLI. Services flush, never
commit: the caller's unit of work owns the transaction."""
