-- Canned responses (SQLite). Keep in step with migrations/postgres/0003_canned_responses.sql.

-- Ready answers operators insert into replies by shortcut. Each has one owner: a user
-- (`personal`), a department (`department`) or everyone (`global`); the CHECK keeps the
-- owner columns in step with the scope.
CREATE TABLE canned_responses (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('personal', 'department', 'global')),
    department_id INTEGER REFERENCES departments (id),
    user_id INTEGER REFERENCES users (id),
    shortcut TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (
        (scope = 'personal' AND user_id IS NOT NULL AND department_id IS NULL)
        OR (scope = 'department' AND department_id IS NOT NULL AND user_id IS NULL)
        OR (scope = 'global' AND department_id IS NULL AND user_id IS NULL)
    )
);
-- A shortcut is unique per owner. The same indexes serve the listing of what a user may
-- use (their own, their department's, the global ones).
CREATE UNIQUE INDEX canned_responses_personal ON canned_responses (user_id, shortcut)
    WHERE scope = 'personal';
CREATE UNIQUE INDEX canned_responses_department ON canned_responses (department_id, shortcut)
    WHERE scope = 'department';
CREATE UNIQUE INDEX canned_responses_global ON canned_responses (shortcut)
    WHERE scope = 'global';
