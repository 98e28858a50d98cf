-- Tagwire schema, version 5: indexes for the outbox queue.
-- The outbox claims pending deliveries oldest first (ORDER BY id) in batches. The index on
-- (status, next_attempt) made every claim read and sort the whole backlog of due rows before
-- taking a batch (quadratic in a burst); a partial index of the pending rows in id order lets a
-- claim stop after its batch, and one on their next_attempt answers "when is the next one due".
-- Both hold pending rows only, so sent rows (nearly all of the table) cost them nothing.
DROP INDEX IF EXISTS deliveries_pending;
CREATE INDEX deliveries_queue ON deliveries(id) WHERE status = 'pending';
CREATE INDEX deliveries_due ON deliveries(next_attempt) WHERE status = 'pending';
-- A delivery's item: the messages to update when a copy arrives, the why-log, and the cascade
-- when items are pruned all look deliveries up by item; without this each one read the whole table.
CREATE INDEX deliveries_item ON deliveries(item_id);
