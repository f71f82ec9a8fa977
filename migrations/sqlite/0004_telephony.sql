-- Telephony (SQLite). Keep in step with migrations/postgres/0004_telephony.sql.

-- The operator's phone extension: calls ringing or answered there are theirs.
ALTER TABLE users ADD COLUMN extension TEXT;
CREATE UNIQUE INDEX users_extension ON users (extension);

-- Where a call came from according to call tracking (utm_*, visit id, landing page) as JSON;
-- whether it is a click-to-call the hub still has to hand to its connector.
ALTER TABLE calls ADD COLUMN traffic_source TEXT;
ALTER TABLE calls ADD COLUMN originate_state TEXT CHECK (originate_state IN ('pending', 'sent'));
CREATE INDEX calls_originate ON calls (connector_id, id) WHERE originate_state = 'pending';
CREATE INDEX calls_from ON calls (from_number, started_at);

-- Every call event a connector delivered, once: `(connector_id, external_id)` is its
-- idempotency key. An event that arrives before its call's `ringing` waits here with no
-- `call_id` and is applied when the call appears.
CREATE TABLE call_events (
    id INTEGER PRIMARY KEY,
    connector_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    call_external_id TEXT NOT NULL,
    call_id INTEGER REFERENCES calls (id),
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (connector_id, external_id)
);
CREATE INDEX call_events_waiting ON call_events (connector_id, call_external_id) WHERE call_id IS NULL;
CREATE INDEX call_events_call ON call_events (call_id);
