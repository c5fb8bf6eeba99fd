"""Finance batches: a bulk file (`format`) validated line by line (`validation`,
`ingest`), recorded as ordinary pending transactions, applied chunk by chunk (`posting`),
with results read back in input order. `service` is what the API and the inbox call;
`states` is the only writer of a batch's status (the lifecycle table); `repository` and
`line_repository` hold the queries. Idempotent submission: db/idempotency.py."""
