-- The set-based posting ceiling that `ledgerq bench batch` compares the batch path to.
-- One pgbench transaction posts :size transfers (default 100) from :payers funded
-- accounts to :payees accounts, against a database built by the real migrations:
--   1. stage the transfers in a temp table,
--   2. lock every account they touch, once, in ascending id order,
--   3. write the transaction rows (already completed) in one INSERT,
--   4. write both entries of every transfer, with balance_after from a running sum,
--      in one INSERT (with a placeholder `hash`: the rows are as wide as the engine's,
--      the chaining itself is what the comparison measures),
--   5. move every balance by its summed delta in one UPDATE ... FROM,
--   6. write every transfer's `transaction.completed` event (the outbox) in one INSERT.
-- Run: pgbench -n -f setbased.sql -D payers=20 -D payees=5000 -D size=100 -c 4 ...
-- (bench_payers, bench_payees and bench_meta are made by api/cli/bench/baseline.py).
BEGIN;
CREATE TEMP TABLE IF NOT EXISTS stage (ord int, id uuid, from_id uuid, to_id uuid, amount bigint) ON COMMIT DELETE ROWS;
INSERT INTO stage (ord, id, from_id, to_id, amount)
SELECT r.ord, gen_random_uuid(), p.id, q.id, r.amount
FROM (SELECT g AS ord,
             1 + floor(random() * :payers)::int AS pn,
             1 + floor(random() * :payees)::int AS qn,
             1 + floor(random() * 999999)::bigint AS amount
      FROM generate_series(1, :size) AS g) AS r
JOIN bench_payers AS p ON p.n = r.pn
JOIN bench_payees AS q ON q.n = r.qn;
SELECT count(*) FROM (
    SELECT 1 FROM balances
    WHERE account_id IN (SELECT from_id FROM stage UNION SELECT to_id FROM stage)
    ORDER BY account_id
    FOR UPDATE
) AS locked;
INSERT INTO transactions (id, type, status, from_account_id, to_account_id, amount_minor, currency, created_by, completed_at)
SELECT s.id, 'transfer', 'completed', s.from_id, s.to_id, s.amount, 'USD', m.user_id, now()
FROM stage AS s CROSS JOIN bench_meta AS m
ORDER BY s.ord;
INSERT INTO ledger_entries (transaction_id, account_id, amount_minor, currency, balance_after_minor, hash)
SELECT l.id, l.account, l.delta, 'USD',
       b.balance_minor + sum(l.delta) OVER (PARTITION BY l.account ORDER BY l.ord, l.leg ROWS UNBOUNDED PRECEDING),
       repeat('0', 64)
FROM (SELECT ord, 0 AS leg, id, from_id AS account, -amount AS delta FROM stage
      UNION ALL
      SELECT ord, 1 AS leg, id, to_id AS account, amount AS delta FROM stage) AS l
JOIN balances AS b ON b.account_id = l.account
ORDER BY l.ord, l.leg;
UPDATE balances AS b
SET balance_minor = b.balance_minor + d.delta, updated_at = now()
FROM (SELECT account, sum(delta) AS delta
      FROM (SELECT from_id AS account, -amount AS delta FROM stage
            UNION ALL
            SELECT to_id AS account, amount AS delta FROM stage) AS legs
      GROUP BY account) AS d
WHERE b.account_id = d.account;
INSERT INTO events (id, type, account_ids, data)
SELECT gen_random_uuid(), 'transaction.completed', ARRAY[t.from_account_id, t.to_account_id],
       jsonb_build_object('id', t.id, 'type', t.type, 'status', t.status,
                          'from_account_id', t.from_account_id, 'to_account_id', t.to_account_id,
                          'amount_minor', t.amount_minor, 'currency', t.currency,
                          'created_at', t.created_at, 'updated_at', t.updated_at, 'completed_at', t.completed_at)
FROM stage AS s JOIN transactions AS t ON t.id = s.id
ORDER BY s.ord;
COMMIT;
