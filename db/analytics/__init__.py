"""Analytics: daily transaction figures and per-account money in and out, read from
rollup tables the database keeps up to date (migration 0016), never from a scan."""
