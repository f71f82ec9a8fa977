-- Foundation schema (SQLite). Keep in step with migrations/postgres/0001_foundation.sql:
-- the same tables, columns and constraints; only types and identity syntax differ.
-- Timestamps are unix microseconds (UTC); flags are 0/1 integers; money is in minor units.

CREATE TABLE departments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    login TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    email TEXT,
    role TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'manager', 'operator')),
    department_id INTEGER REFERENCES departments (id),
    password_hash TEXT,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id),
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);

CREATE TABLE custom_fields (
    id INTEGER PRIMARY KEY,
    entity TEXT NOT NULL CHECK (entity IN ('client')),
    key TEXT NOT NULL,
    label TEXT NOT NULL,
    field_type TEXT NOT NULL CHECK (field_type IN ('string', 'number', 'date', 'enum')),
    options TEXT NOT NULL DEFAULT '[]',
    required INTEGER NOT NULL DEFAULT 0 CHECK (required IN (0, 1)),
    position INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (entity, key)
);

CREATE TABLE clients (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('company', 'person')),
    name TEXT NOT NULL,
    name_norm TEXT NOT NULL,
    notes TEXT,
    custom_fields TEXT NOT NULL DEFAULT '{}',
    responsible_id INTEGER REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    shared INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
    converted_from_lead_id INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX clients_name_norm ON clients (name_norm, id);
CREATE INDEX clients_responsible ON clients (responsible_id, name_norm);
CREATE INDEX clients_department ON clients (department_id, name_norm);

-- One row per word of a client's name (normalized), for word-prefix search:
-- "ромаш" finds "ООО Ромашка".
CREATE TABLE client_search_terms (
    term TEXT NOT NULL,
    client_id INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- Copies of the client's ownership, so a manager's search filters inside the index
    -- instead of looking up every matching client (kept in step by the store).
    responsible_id INTEGER,
    department_id INTEGER,
    shared INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (term, client_id)
);
CREATE INDEX client_search_terms_visible ON client_search_terms (term, client_id, responsible_id, department_id, shared);
CREATE INDEX client_search_terms_client ON client_search_terms (client_id, term);

CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    client_id INTEGER NOT NULL REFERENCES clients (id),
    name TEXT NOT NULL,
    position TEXT,
    notes TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX contacts_client ON contacts (client_id);

CREATE TABLE leads (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    company_name TEXT,
    phone TEXT,
    email TEXT,
    source TEXT,
    status TEXT NOT NULL CHECK (status IN ('open', 'converted', 'rejected')),
    converted_client_id INTEGER REFERENCES clients (id),
    converted_at INTEGER,
    responsible_id INTEGER REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    shared INTEGER NOT NULL DEFAULT 1 CHECK (shared IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX leads_responsible ON leads (responsible_id);
CREATE INDEX leads_department ON leads (department_id);

-- A channel identity points at a client (optionally one of its contacts) or at a lead.
CREATE TABLE identities (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('phone', 'email', 'telegram', 'vk', 'whatsapp', 'web_visitor')),
    value TEXT NOT NULL,
    client_id INTEGER REFERENCES clients (id),
    contact_id INTEGER REFERENCES contacts (id),
    lead_id INTEGER REFERENCES leads (id),
    created_at INTEGER NOT NULL,
    UNIQUE (kind, value),
    CHECK ((client_id IS NULL) <> (lead_id IS NULL)),
    CHECK (contact_id IS NULL OR client_id IS NOT NULL)
);
CREATE INDEX identities_client ON identities (client_id);
CREATE INDEX identities_contact ON identities (contact_id);
CREATE INDEX identities_lead ON identities (lead_id);

CREATE TABLE sales_scenarios (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE stages (
    id INTEGER PRIMARY KEY,
    scenario_id INTEGER NOT NULL REFERENCES sales_scenarios (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('open', 'won', 'lost')),
    UNIQUE (scenario_id, position)
);

CREATE TABLE interests (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    client_id INTEGER REFERENCES clients (id),
    contact_id INTEGER REFERENCES contacts (id),
    lead_id INTEGER REFERENCES leads (id),
    scenario_id INTEGER NOT NULL REFERENCES sales_scenarios (id),
    stage_id INTEGER NOT NULL REFERENCES stages (id),
    status TEXT NOT NULL CHECK (status IN ('open', 'won', 'lost')),
    amount_minor INTEGER,
    currency TEXT NOT NULL DEFAULT 'RUB',
    source TEXT,
    responsible_id INTEGER REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    shared INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
    closed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((client_id IS NULL) <> (lead_id IS NULL))
);
CREATE INDEX interests_client ON interests (client_id, status);
CREATE INDEX interests_lead ON interests (lead_id);
CREATE INDEX interests_responsible ON interests (responsible_id);

CREATE TABLE interest_stage_history (
    id INTEGER PRIMARY KEY,
    interest_id INTEGER NOT NULL REFERENCES interests (id),
    from_stage_id INTEGER REFERENCES stages (id),
    to_stage_id INTEGER NOT NULL REFERENCES stages (id),
    changed_by INTEGER REFERENCES users (id),
    changed_at INTEGER NOT NULL
);
CREATE INDEX interest_stage_history_interest ON interest_stage_history (interest_id, id);

CREATE TABLE dialogs (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    connector_id TEXT NOT NULL,
    external_thread_id TEXT NOT NULL,
    identity_id INTEGER REFERENCES identities (id),
    client_id INTEGER REFERENCES clients (id),
    contact_id INTEGER REFERENCES contacts (id),
    lead_id INTEGER REFERENCES leads (id),
    interest_id INTEGER REFERENCES interests (id),
    assignee_id INTEGER REFERENCES users (id),
    department_id INTEGER REFERENCES departments (id),
    shared INTEGER NOT NULL DEFAULT 1 CHECK (shared IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    subject TEXT,
    last_message_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    closed_at INTEGER,
    UNIQUE (connector_id, external_thread_id),
    CHECK (client_id IS NULL OR lead_id IS NULL)
);
CREATE INDEX dialogs_assignee ON dialogs (assignee_id, status);
CREATE INDEX dialogs_department ON dialogs (department_id, status);
CREATE INDEX dialogs_client ON dialogs (client_id);
CREATE INDEX dialogs_lead ON dialogs (lead_id);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    dialog_id INTEGER NOT NULL REFERENCES dialogs (id),
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    connector_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    provider_message_id TEXT,
    body TEXT,
    attachments TEXT NOT NULL DEFAULT '[]',
    delivery_status TEXT NOT NULL CHECK (delivery_status IN ('received', 'pending', 'sent', 'delivered', 'read', 'failed')),
    delivery_error TEXT,
    author_user_id INTEGER REFERENCES users (id),
    sent_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (connector_id, external_id)
);
CREATE INDEX messages_dialog ON messages (dialog_id, id);

CREATE TABLE calls (
    id INTEGER PRIMARY KEY,
    connector_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal')),
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ringing', 'answered', 'completed', 'missed')),
    missed_reason TEXT,
    operator_id INTEGER REFERENCES users (id),
    extension TEXT,
    client_id INTEGER REFERENCES clients (id),
    contact_id INTEGER REFERENCES contacts (id),
    lead_id INTEGER REFERENCES leads (id),
    interest_id INTEGER REFERENCES interests (id),
    started_at INTEGER NOT NULL,
    answered_at INTEGER,
    ended_at INTEGER,
    duration_secs INTEGER,
    recording_url TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (connector_id, external_id),
    CHECK (client_id IS NULL OR lead_id IS NULL)
);
CREATE INDEX calls_client ON calls (client_id);
CREATE INDEX calls_lead ON calls (lead_id);
CREATE INDEX calls_operator ON calls (operator_id);

CREATE TABLE interactions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('call', 'meeting', 'email', 'message', 'note', 'task')),
    status TEXT NOT NULL CHECK (status IN ('planned', 'done', 'cancelled')),
    subject TEXT NOT NULL,
    body TEXT,
    client_id INTEGER REFERENCES clients (id),
    contact_id INTEGER REFERENCES contacts (id),
    lead_id INTEGER REFERENCES leads (id),
    interest_id INTEGER REFERENCES interests (id),
    dialog_id INTEGER REFERENCES dialogs (id),
    call_id INTEGER REFERENCES calls (id),
    responsible_id INTEGER REFERENCES users (id),
    planned_at INTEGER,
    done_at INTEGER,
    created_by INTEGER REFERENCES users (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((client_id IS NULL) <> (lead_id IS NULL))
);
CREATE INDEX interactions_client ON interactions (client_id);
CREATE INDEX interactions_lead ON interactions (lead_id);
CREATE INDEX interactions_interest ON interactions (interest_id);
CREATE INDEX interactions_responsible ON interactions (responsible_id, status, planned_at);

-- The Feed: one row per item shown on a client / contact / lead / Interest timeline, written in
-- the same transaction as the item, so a page is one index range scan.
CREATE TABLE feed_entries (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('note', 'task', 'meeting', 'call', 'email', 'message', 'interest')),
    ref_type TEXT NOT NULL CHECK (ref_type IN ('interaction', 'message', 'call', 'interest')),
    ref_id INTEGER NOT NULL,
    client_id INTEGER REFERENCES clients (id),
    contact_id INTEGER REFERENCES contacts (id),
    lead_id INTEGER REFERENCES leads (id),
    interest_id INTEGER REFERENCES interests (id),
    occurred_at INTEGER NOT NULL,
    title TEXT NOT NULL,
    preview TEXT,
    UNIQUE (ref_type, ref_id)
);
CREATE INDEX feed_client ON feed_entries (client_id, occurred_at, id);
CREATE INDEX feed_contact ON feed_entries (contact_id, occurred_at, id);
CREATE INDEX feed_lead ON feed_entries (lead_id, occurred_at, id);
CREATE INDEX feed_interest ON feed_entries (interest_id, occurred_at, id);

-- Append-only change log and audit trail. `seq` grows with commit order (see storage docs):
-- a console resumes with `seq > last_seen`.
CREATE TABLE change_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor_user_id INTEGER,
    actor_api_key_id INTEGER,
    entity TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    op TEXT NOT NULL,
    data TEXT NOT NULL,
    client_id INTEGER,
    lead_id INTEGER,
    interest_id INTEGER,
    dialog_id INTEGER,
    department_id INTEGER
);
CREATE INDEX change_log_entity ON change_log (entity, entity_id, seq);

INSERT INTO sales_scenarios (id, name, created_at) VALUES (1, 'Standard sale', 0);
INSERT INTO stages (scenario_id, position, name, outcome) VALUES
    (1, 1, 'First contact', 'open'),
    (1, 2, 'Needs identified', 'open'),
    (1, 3, 'Offer sent', 'open'),
    (1, 4, 'Negotiation', 'open'),
    (1, 5, 'Won', 'won'),
    (1, 6, 'Lost', 'lost');
