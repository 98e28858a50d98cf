-- Tagwire schema, version 6: lookups the delivery path makes, by index.
-- Deleting a delivery (pruning old items) drops the thread it was the root of: without an index on
-- the root, every deleted delivery read the whole threads table.
CREATE INDEX threads_root ON threads(root_delivery_id);
-- The pending queue carries next_attempt, so a claim skips rows that are not due yet (a destination
-- held by a rate limit, retries backing off) without reading them from the table.
DROP INDEX IF EXISTS deliveries_queue;
CREATE INDEX deliveries_queue ON deliveries(id, next_attempt) WHERE status = 'pending';
-- A destination's pending rows in order: a claim skips a row while an earlier pending row of the
-- same destination is held back (a failed message waiting for its retry), so nothing overtakes it.
CREATE INDEX deliveries_held ON deliveries(destination, id, next_attempt) WHERE status = 'pending';
