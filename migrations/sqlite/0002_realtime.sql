-- Real-time core (SQLite). Keep in step with migrations/postgres/0002_realtime.sql.

-- Topics of each change, so a console resumes one topic (`dialog:7`, `user:3`, `dept:1`,
-- `client:9`, ...) from a sequence number with one index range. `change_log.topics` holds
-- the same list (space-separated) so a row read back builds the same event it did live.
ALTER TABLE change_log ADD COLUMN topics TEXT NOT NULL DEFAULT '';
-- Who owns the record the change is about, when the change says (a dialog's assignee, a
-- client's responsible manager), and whether it is shared with its department: live
-- events are filtered per connection with the same rule as the SQL access predicates.
ALTER TABLE change_log ADD COLUMN owner_id INTEGER;
ALTER TABLE change_log ADD COLUMN shared INTEGER;
CREATE TABLE change_topics (
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (topic, seq)
) WITHOUT ROWID;

-- Routing settings per department.
ALTER TABLE departments ADD COLUMN routing_policy TEXT NOT NULL DEFAULT 'round_robin'
    CHECK (routing_policy IN ('round_robin', 'least_loaded'));
-- Seconds an assigned dialog may go unanswered before it is offered to the next operator;
-- 0 turns re-offering off.
ALTER TABLE departments ADD COLUMN offer_timeout_secs INTEGER NOT NULL DEFAULT 120;
-- New dialogs wait for a bot (connected on /ws/bot) until it hands them over, or until
-- the offer timeout passes without an answer.
ALTER TABLE departments ADD COLUMN bot_first INTEGER NOT NULL DEFAULT 0 CHECK (bot_first IN (0, 1));
-- The last operator round-robin picked in this department.
ALTER TABLE departments ADD COLUMN rr_last_user_id INTEGER;

-- How many open dialogs an operator takes at once.
ALTER TABLE users ADD COLUMN max_dialogs INTEGER NOT NULL DEFAULT 5 CHECK (max_dialogs BETWEEN 0 AND 1000);

-- Presence as routing sees it. `status` is what the operator chose (online / away) or
-- offline once their last connection has been gone longer than the grace period.
CREATE TABLE operator_presence (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('online', 'away', 'offline')),
    chosen TEXT NOT NULL DEFAULT 'online' CHECK (chosen IN ('online', 'away')),
    on_call INTEGER NOT NULL DEFAULT 0 CHECK (on_call IN (0, 1)),
    since INTEGER NOT NULL,
    last_assigned_at INTEGER
);

-- Open operator connections per hub node; presence is online while any live node holds one.
CREATE TABLE operator_connections (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    connections INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, node_id)
);

-- Hub nodes with a heartbeat; rows of a node whose heartbeat stopped are cleared by the others.
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

-- Leases for work that runs once per cluster (an AMI connection, an IMAP mailbox).
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Routing state of a dialog.
ALTER TABLE dialogs ADD COLUMN assigned_at INTEGER;
ALTER TABLE dialogs ADD COLUMN assign_reason TEXT;
-- Waiting for an operator's answer since (the first unanswered inbound message).
ALTER TABLE dialogs ADD COLUMN waiting_since INTEGER;
ALTER TABLE dialogs ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;
CREATE INDEX dialogs_queue ON dialogs (department_id, status, assignee_id, waiting_since);

-- Every assignment with its reason, oldest first.
CREATE TABLE dialog_assignments (
    id INTEGER PRIMARY KEY,
    dialog_id INTEGER NOT NULL REFERENCES dialogs (id),
    user_id INTEGER REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    reason TEXT NOT NULL,
    by_user_id INTEGER,
    at INTEGER NOT NULL
);
CREATE INDEX dialog_assignments_dialog ON dialog_assignments (dialog_id, id);

-- Hub-wide settings, e.g. the key that signs widget visitor tokens (shared by all nodes).
CREATE TABLE hub_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
