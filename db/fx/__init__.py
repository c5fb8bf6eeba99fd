"""Foreign exchange: rates set by finance (`service`, kept as an append-only history in
`repository`), their exact arithmetic (`rates`, no SQLAlchemy), and the quote an exchange
request fixes at request time (`quotes`). The posting itself is the engine's
(db/ledger/posting/exchange.py)."""
