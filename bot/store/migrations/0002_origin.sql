-- Tagwire schema, version 2: the outlet an item credits as its origin ("originally appeared in X"),
-- so that when that outlet's own copy arrives, messages show the original rather than the reprint.
ALTER TABLE items ADD COLUMN origin TEXT NOT NULL DEFAULT ''
