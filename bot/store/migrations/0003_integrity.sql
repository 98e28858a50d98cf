-- Tagwire schema, version 3: ids are never reused, and nothing dangles when items go.
-- The judge allocates item and story ids itself; remember the highest ever handed out, so deleting
-- the newest items (a removed source) cannot make the next start hand the same ids out again.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) SELECT 'item', COALESCE(MAX(id), 0) FROM items;
INSERT INTO counters (name, value) SELECT 'story', MAX(COALESCE((SELECT MAX(id) FROM stories), 0),
                                                     COALESCE((SELECT MAX(story_id) FROM items), 0));

-- The full-text row goes with its item, however the item goes (prune, or a removed source's cascade).
CREATE TRIGGER items_forget_fts AFTER DELETE ON items BEGIN
    DELETE FROM items_fts WHERE rowid = old.id;
END;

-- A thread whose root message row is gone is no thread: the story's next item starts a new one.
CREATE TRIGGER deliveries_forget_thread AFTER DELETE ON deliveries BEGIN
    DELETE FROM threads WHERE root_delivery_id = old.id;
END;

DELETE FROM items_fts WHERE rowid NOT IN (SELECT id FROM items);
DELETE FROM threads WHERE root_delivery_id NOT IN (SELECT id FROM deliveries);
