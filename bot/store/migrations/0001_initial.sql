-- Tagwire schema, version 1.
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    interval REAL,                         -- seconds; NULL: fetch.default_interval
    in_config INTEGER NOT NULL DEFAULT 0,  -- 1: declared in the config file
    state TEXT NOT NULL DEFAULT 'new',     -- new | ok | failing
    next_poll REAL NOT NULL DEFAULT 0,
    last_poll REAL,
    last_success REAL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    etag TEXT,
    last_modified TEXT,
    body_hash TEXT,
    baseline_done INTEGER NOT NULL DEFAULT 0,
    item_count INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX sources_next_poll ON sources(next_poll);

-- Which workspaces may see a source: '' is everyone (config and console); otherwise a Slack team
-- or Discord guild that added it with `/sources add`.
CREATE TABLE source_owners (
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    added_by TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    PRIMARY KEY (source_id, workspace)
);

CREATE TABLE stories (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    first_item_id INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX stories_updated ON stories(updated);

CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    guid TEXT NOT NULL,
    url TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    published REAL,
    seen REAL NOT NULL,
    categories TEXT NOT NULL DEFAULT '[]',
    author TEXT NOT NULL DEFAULT '',
    story_id INTEGER,
    duplicate_of INTEGER,
    UNIQUE (source_id, guid)
);
CREATE INDEX items_url ON items(url);
CREATE INDEX items_story ON items(story_id);
CREATE INDEX items_seen ON items(seen);
CREATE INDEX items_duplicate_of ON items(duplicate_of);

CREATE VIRTUAL TABLE items_fts USING fts5(
    title, body, source, tokenize='unicode61 remove_diacritics 2'
);

CREATE TABLE fingerprints (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    created REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX fingerprints_created ON fingerprints(created);

CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    workspace TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL,
    normal_form TEXT NOT NULL,
    in_config INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    paused_reason TEXT,
    UNIQUE (destination, normal_form)
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    story_id INTEGER NOT NULL,
    kind TEXT NOT NULL,                   -- alert | reply | update
    tags TEXT NOT NULL DEFAULT '[]',
    target_delivery_id INTEGER,           -- update: the delivery whose message is edited
    status TEXT NOT NULL DEFAULT 'pending', -- pending | sending | sent | failed | paused
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    message_ref TEXT,
    thread_ref TEXT,
    created REAL NOT NULL,
    sent_at REAL,
    UNIQUE (destination, item_id, kind)
);
CREATE INDEX deliveries_pending ON deliveries(status, next_attempt);

-- One thread per (destination, story): the first delivery of a story to a destination is its root.
CREATE TABLE threads (
    destination TEXT NOT NULL,
    story_id INTEGER NOT NULL,
    root_delivery_id INTEGER NOT NULL,
    PRIMARY KEY (destination, story_id)
);

-- Why an item was or was not posted: one row per decision (destination '' for global ones).
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    destination TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    decision TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX decisions_item ON decisions(item_id);
