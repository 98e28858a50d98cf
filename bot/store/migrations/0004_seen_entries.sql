-- Tagwire schema, version 4: digests of the entries a source's last parsed body held (see
-- bot/entryspans.py), so the next changed body is parsed without them, across restarts too.
ALTER TABLE sources ADD COLUMN seen_entries BLOB
