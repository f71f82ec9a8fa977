-- Messengers, email and forms. Keep in step with migrations/postgres/0005_channels.sql.

-- Email and forms: the subject of each message, its HTML body (sanitized by the
-- connector), and the quoted history / signature separated from the new text.
ALTER TABLE messages ADD COLUMN subject TEXT;
ALTER TABLE messages ADD COLUMN html TEXT;
ALTER TABLE messages ADD COLUMN quoted TEXT;

-- Where a lead came from according to a form or call tracking (utm_*, referrer, landing
-- page, client ids) as JSON; `source` keeps the one-line summary.
ALTER TABLE leads ADD COLUMN traffic_source TEXT;

-- Files connectors received (mail attachments, messenger media), by content: one row per
-- distinct content, whatever name it came under. In the database so that every node sees
-- it and a backup holds it.
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    mime_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    content BLOB NOT NULL,
    connector_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- What a connector instance remembers across restarts (an IMAP mailbox's UIDVALIDITY and
-- last UID, a long-poll cursor), by its own keys.
CREATE TABLE connector_state (
    connector_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (connector_id, key)
);
