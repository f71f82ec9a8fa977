-- iConsultant's knowledge base. (SQLite.) Keep in step with migrations/postgres/0007_kb.sql.

-- Articles (1C:CRM "база знаний"): ready answers with links and images, suggested to
-- operators while a dialog is open. `tags` is a JSON array of lowercase strings. An article
-- with a department is suggested in that department's dialogs only; `public` = 0 marks an
-- internal one (for operators, not to be sent as it is). Every node keeps all articles in
-- an in-memory index, rebuilt at start and kept in step from the change log.
CREATE TABLE kb_articles (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    language TEXT NOT NULL,
    department_id INTEGER REFERENCES departments (id),
    public INTEGER NOT NULL DEFAULT 1 CHECK (public IN (0, 1)),
    used_count INTEGER NOT NULL DEFAULT 0,
    created_by INTEGER REFERENCES users (id),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Which suggestion an operator put into a reply, in which dialog: one row per article,
-- dialog and operator (using it twice in one dialog counts once). Feeds the ranking
-- through kb_articles.used_count.
CREATE TABLE kb_uses (
    article_id INTEGER NOT NULL REFERENCES kb_articles (id) ON DELETE CASCADE,
    dialog_id INTEGER NOT NULL REFERENCES dialogs (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (article_id, dialog_id, user_id)
);
