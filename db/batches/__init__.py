"""Finance batches: a bulk file (`format`) validated line by line (`validation`,
`ingest`), recorded as ordinary pending transactions, applied chunk by chunk (`posting`),
with results read back in input order. `service` is what the API and the inbox call;
`repository` and `line_repository` hold the queries."""
