"""Process plumbing that is not business logic: the embedded PostgreSQL and Redis of
`ledgerq up` and the tests (`embedded`), and Prometheus multiprocess directories
(`metrics_dirs`)."""
