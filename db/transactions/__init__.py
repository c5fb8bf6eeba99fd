"""Money-movement requests: recording them (`service`: request-time rules, the durable
`pending` row, cancel, reverse, scheduled release), their queries (`repository`) and the
operator retry of a dead-lettered one (`dead_letters`)."""
