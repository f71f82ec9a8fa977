-- iConsultant: request types, the classifier's readings, operators' feedback and trained
-- models. Keep in step with migrations/postgres/0006_assist.sql.

-- Request types (1C:CRM "типы обращений"): the classes inquiries are sorted into, defined
-- by an admin. `key` is the classifier's label. A type applied to a new inquiry
-- (automatically at or above `auto_threshold`, or by an operator) sends its dialog to
-- `department_id`'s queue when one is set.
CREATE TABLE request_types (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    department_id INTEGER REFERENCES departments (id),
    auto_threshold REAL NOT NULL CHECK (auto_threshold > 0 AND auto_threshold <= 1),
    position INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO request_types (key, name, department_id, auto_threshold, position, created_at, updated_at)
VALUES ('interest', 'Sales inquiry', NULL, 0.8, 1, 0, 0),
       ('claim', 'Claim', NULL, 0.8, 2, 0, 0),
       ('bug', 'Bug report', NULL, 0.8, 3, 0, 0),
       ('other', 'Other', NULL, 0.9, 4, 0, 0);

-- The classifier's reading of an inbound text message, as JSON:
-- {"model": "<version>", "ranked": [["claim", 0.91], ["bug", 0.05], ...]}.
ALTER TABLE messages ADD COLUMN classification TEXT;

-- The inquiry's request type: applied by the classifier above its threshold
-- (request_type_by = 'classifier') or chosen by an operator ('operator').
ALTER TABLE dialogs ADD COLUMN request_type TEXT;
ALTER TABLE dialogs ADD COLUMN request_type_by TEXT;

-- Operators' likes and dislikes of a reading: the labelled history the classifier learns
-- from (online at once, and in every retraining). One verdict per operator and message;
-- a later one replaces it. `text` is what was classified, kept so that retraining does
-- not depend on the message staying as it was.
CREATE TABLE classifier_feedback (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    predicted TEXT,
    label TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('like', 'dislike')),
    text TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (message_id, user_id)
);

-- Trained classifier models, serialized. Every node loads the newest at start and then
-- learns the feedback after `feedback_upto`. A retrained model is stored only when it is
-- not worse than the one in use on the held-back slice of the company's own feedback.
CREATE TABLE classifier_models (
    id INTEGER PRIMARY KEY,
    engine TEXT NOT NULL,
    model BLOB NOT NULL,
    feedback_upto INTEGER NOT NULL,
    examples INTEGER NOT NULL,
    holdout_size INTEGER NOT NULL,
    holdout_accuracy REAL,
    previous_accuracy REAL,
    created_at INTEGER NOT NULL
);
