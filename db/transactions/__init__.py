"""Money-movement requests: recording them (`service`: request-time rules, the durable
`pending` row, cancel, reverse, scheduled release; the replay is db/idempotency.py),
what a principal may see of them (`views`: visibility, `TransactionView` with
`reversed_by`, history, long-poll), their queries (`repository`, including the
workers' attempt and dead-letter updates) and a transaction's dead letter: recorded
when its message fails for good, retried by an operator (`dead_letters`)."""
