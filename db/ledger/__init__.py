"""The ledger: the only code that moves money.

`posting` decides and writes postings under the account locks; `limits` holds the
outgoing-limit rules it enforces; `repository` holds the ledger-entry and balance reads;
`verify` checks every invariant of DESIGN.md and `rebuild` replays balances from the
entries. This package imports no service: callers turn a posting's outcome into their
own bookkeeping."""
