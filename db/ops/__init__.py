"""Process plumbing that is not business logic: the embedded PostgreSQL and Redis of
`ledgerq up` and the tests (`embedded`), Prometheus multiprocess directories
(`metrics_dirs`) and the metrics themselves (`metrics`), backups (`backups`), backlog
gauges (`backlog`), and the session-level advisory locks of the scheduler's leadership
and inbox scan (`advisory_locks`)."""
