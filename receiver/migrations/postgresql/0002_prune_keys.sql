-- Idempotency keys older than --key-ttl are pruned, oldest first (by received_at), at
-- most once a minute by whichever receiver on the database gets there:
-- `maintenance` says when a task was last done.
CREATE INDEX deltas_by_received_at ON deltas (received_at);

CREATE TABLE maintenance (
    task TEXT PRIMARY KEY,
    done_at DOUBLE PRECISION NOT NULL
);

INSERT INTO maintenance VALUES ('prune_keys', 0);
