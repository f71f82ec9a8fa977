//! Users, departments, sessions, API keys and custom field definitions.

use sqlx::Row;

use super::validate_ref::*;
use super::{conflict_on, rows, unchanged, Change, Credentials, SqlStore, StoreError, StoreResult};
use crate::domain::validate::{optional_text, required_text};
use crate::domain::*;

fn require_admin(actor: &Actor) -> StoreResult<()> {
    if actor.has_scope(Scope::Admin) {
        Ok(())
    } else {
        Err(StoreError::Forbidden("this needs the admin role".into()))
    }
}

fn check_login(login: &str) -> Result<String, FieldError> {
    let l = login.trim().to_lowercase();
    let ok = (2..=64).contains(&l.chars().count())
        && l.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(l)
    } else {
        Err(FieldError::new(
            "login",
            "invalid_login",
            "a login is 2 to 64 letters, digits, '.', '_', '-' or '@'",
        ))
    }
}

impl SqlStore {
    pub(crate) async fn count_users_impl(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn create_department_impl(
        &self,
        actor: &Actor,
        input: &NewDepartment,
    ) -> StoreResult<Department> {
        require_admin(actor)?;
        let name = required_text("name", &input.name, Limits::NAME)?;
        let mut tx = self.write(actor).await?;
        let now = tx.now;
        let row = sqlx::query("INSERT INTO departments (name, created_at) VALUES ($1, $2) RETURNING id, name, created_at")
            .bind(&name)
            .bind(now.micros())
            .fetch_one(tx.conn())
            .await
            .map_err(conflict_on("name", format!("a department named `{name}` exists")))?;
        let d = rows::department(&row)?;
        tx.log(Change::new("department", d.id, "create", &d).department(Some(d.id)));
        tx.commit().await?;
        Ok(d)
    }

    pub(crate) async fn list_departments_impl(&self) -> StoreResult<Vec<Department>> {
        let rs = sqlx::query("SELECT id, name, created_at FROM departments ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rs.iter().map(rows::department).collect()
    }

    pub(crate) async fn create_user_impl(
        &self,
        actor: &Actor,
        input: &NewUser,
        password_hash: &str,
    ) -> StoreResult<User> {
        require_admin(actor)?;
        let login = check_login(&input.login)?;
        let name = required_text("name", &input.name, Limits::NAME)?;
        let email = match optional_text("email", input.email.as_deref(), Limits::IDENTITY)? {
            Some(e) => Some(normalize_email("email", &e)?),
            None => None,
        };
        let mut tx = self.write(actor).await?;
        if let Some(d) = input.department_id {
            department_exists(&mut tx, "department_id", d).await?;
        }
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO users (login, name, email, role, department_id, password_hash, active, must_change_password, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $8) RETURNING {}",
            rows::USER_COLS.replace("u.", "")
        );
        let row = sqlx::query(&sql)
            .bind(&login)
            .bind(&name)
            .bind(email)
            .bind(input.role.as_str())
            .bind(input.department_id)
            .bind(password_hash)
            .bind(i64::from(input.must_change_password))
            .bind(now)
            .fetch_one(tx.conn())
            .await
            .map_err(conflict_on(
                "login",
                format!("the login `{login}` is taken"),
            ))?;
        let u = rows::user(&row)?;
        tx.log(Change::new("user", u.id, "create", &u).department(u.department_id));
        tx.commit().await?;
        Ok(u)
    }

    pub(crate) async fn get_user_impl(&self, id: Id) -> StoreResult<User> {
        let sql = format!("SELECT {} FROM users u WHERE u.id = $1", rows::USER_COLS);
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { entity: "user" })?;
        rows::user(&row)
    }

    pub(crate) async fn list_users_impl(&self) -> StoreResult<Vec<User>> {
        let sql = format!(
            "SELECT {} FROM users u ORDER BY u.name, u.id",
            rows::USER_COLS
        );
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(rows::user).collect()
    }

    pub(crate) async fn update_user_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &UserPatch,
        password_hash: Option<String>,
    ) -> StoreResult<User> {
        require_admin(actor)?;
        let mut tx = self.write(actor).await?;
        // Read and lock the user inside the transaction (see `by_id::ById::fetch_for_update`).
        let lock = if tx.backend() == super::Backend::Postgres {
            " FOR UPDATE OF u"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {} FROM users u WHERE u.id = $1{lock}",
            rows::USER_COLS
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound { entity: "user" })?;
        let mut u = rows::user(&row)?;
        let before = u.clone();
        if let Some(n) = &patch.name {
            u.name = required_text("name", n, Limits::NAME)?;
        }
        if let Some(e) = &patch.email {
            u.email = match optional_text("email", Some(e), Limits::IDENTITY)? {
                Some(e) => Some(normalize_email("email", &e)?),
                None => None,
            };
        }
        if let Some(r) = patch.role {
            if actor.user_id() == Some(id) && r != Role::Admin {
                return Err(StoreError::Conflict {
                    field: "role".into(),
                    message: "you cannot take the admin role from yourself".into(),
                });
            }
            u.role = r;
        }
        if let Some(a) = patch.active {
            if actor.user_id() == Some(id) && !a {
                return Err(StoreError::Conflict {
                    field: "active".into(),
                    message: "you cannot disable yourself".into(),
                });
            }
            u.active = a;
        }
        if let Some(d) = patch.department_id {
            department_exists(&mut tx, "department_id", d).await?;
            u.department_id = Some(d);
        }
        if let Some(x) = &patch.extension {
            u.extension = extension("extension", x)?;
        }
        if unchanged(&before, &u) && password_hash.is_none() {
            // Nothing to write, nothing to log.
            return Ok(before);
        }
        u.updated_at = tx.now;
        if u.extension.is_some() && u.extension != before.extension {
            let taken: Option<String> =
                sqlx::query_scalar("SELECT login FROM users WHERE extension = $1 AND id <> $2")
                    .bind(&u.extension)
                    .bind(id)
                    .fetch_optional(tx.conn())
                    .await?;
            if let Some(login) = taken {
                return Err(StoreError::Duplicate {
                    field: "extension".into(),
                    message: format!(
                        "extension {} is {login}'s",
                        u.extension.as_deref().unwrap_or_default()
                    ),
                });
            }
        }
        sqlx::query(
            "UPDATE users SET name = $1, email = $2, role = $3, department_id = $4, active = $5, updated_at = $6, \
             password_hash = COALESCE($7, password_hash), \
             must_change_password = CASE WHEN $7 IS NULL THEN must_change_password ELSE 1 END, extension = $9 WHERE id = $8",
        )
        .bind(&u.name)
        .bind(&u.email)
        .bind(u.role.as_str())
        .bind(u.department_id)
        .bind(i64::from(u.active))
        .bind(u.updated_at.micros())
        .bind(password_hash.as_deref())
        .bind(id)
        .bind(&u.extension)
        .execute(tx.conn())
        .await
        .map_err(super::conflict_on("extension", "the extension was taken concurrently"))?;
        if !u.active || password_hash.is_some() {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        let mut data = serde_json::to_value(&u).unwrap_or_default();
        if password_hash.is_some() {
            data["password_changed"] = serde_json::Value::Bool(true);
        }
        tx.log(Change::new("user", id, "update", data).department(u.department_id));
        tx.commit().await?;
        Ok(u)
    }

    pub(crate) async fn change_own_password_impl(
        &self,
        user_id: Id,
        password_hash: &str,
        keep_session: &str,
    ) -> StoreResult<()> {
        // The user acts on their own record; the role does not matter for the write itself.
        let actor = Actor::User {
            id: user_id,
            role: Role::Operator,
            department_id: None,
        };
        let mut tx = self.write(&actor).await?;
        sqlx::query("UPDATE users SET password_hash = $1, must_change_password = 0, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(tx.now.micros())
            .bind(user_id)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user_id)
            .bind(keep_session)
            .execute(tx.conn())
            .await?;
        tx.log(Change::new(
            "user",
            user_id,
            "password",
            serde_json::json!({ "password_changed": true, "by": user_id }),
        ));
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn credentials_impl(&self, login: &str) -> StoreResult<Option<Credentials>> {
        let sql = format!(
            "SELECT {}, u.password_hash FROM users u WHERE u.login = $1",
            rows::USER_COLS
        );
        let Some(row) = sqlx::query(&sql)
            .bind(login.trim().to_lowercase())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            user: rows::user(&row)?,
            password_hash: row.try_get::<Option<String>, _>("password_hash")?,
        }))
    }

    pub(crate) async fn create_session_impl(
        &self,
        user_id: Id,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        let now = Timestamp::now().micros();
        let _guard = self.single_write_guard().await;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at.micros())
            .execute(&self.pool)
            .await?;
        // Expired sessions of this user are cleaned up as new ones are made.
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND expires_at < $2")
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn session_user_impl(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active = 1",
            rows::USER_COLS
        );
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .bind(now.micros())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::user).transpose()
    }

    pub(crate) async fn delete_session_impl(&self, token_hash: &str) -> StoreResult<()> {
        let _guard = self.single_write_guard().await;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn create_api_key_impl(
        &self,
        actor: &Actor,
        input: &NewApiKey,
        prefix: &str,
        key_hash: &str,
    ) -> StoreResult<ApiKey> {
        require_admin(actor)?;
        let name = required_text("name", &input.name, Limits::NAME)?;
        if input.scopes.is_empty() {
            return Err(FieldError::new("scopes", "required", "give at least one scope").into());
        }
        let mut scopes: Vec<&str> = input.scopes.iter().map(|s| s.as_str()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let mut tx = self.write(actor).await?;
        let sql = format!(
            "INSERT INTO api_keys (name, prefix, key_hash, scopes, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING {}",
            rows::API_KEY_COLS.replace("k.", "")
        );
        let row = sqlx::query(&sql)
            .bind(&name)
            .bind(prefix)
            .bind(key_hash)
            .bind(scopes.join(" "))
            .bind(actor.user_id())
            .bind(tx.now.micros())
            .fetch_one(tx.conn())
            .await?;
        let k = rows::api_key(&row)?;
        tx.log(Change::new("api_key", k.id, "create", &k));
        tx.commit().await?;
        Ok(k)
    }

    pub(crate) async fn list_api_keys_impl(&self) -> StoreResult<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {} FROM api_keys k ORDER BY k.id",
            rows::API_KEY_COLS
        );
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(rows::api_key).collect()
    }

    pub(crate) async fn revoke_api_key_impl(&self, actor: &Actor, id: Id) -> StoreResult<ApiKey> {
        require_admin(actor)?;
        let mut tx = self.write(actor).await?;
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING {}",
            rows::API_KEY_COLS.replace("k.", "")
        );
        let row = sqlx::query(&sql)
            .bind(tx.now.micros())
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound { entity: "api key" })?;
        let k = rows::api_key(&row)?;
        tx.log(Change::new("api_key", k.id, "revoke", &k));
        tx.commit().await?;
        Ok(k)
    }

    pub(crate) async fn api_key_by_prefix_impl(
        &self,
        prefix: &str,
    ) -> StoreResult<Option<(ApiKey, String)>> {
        let sql = format!(
            "SELECT {} FROM api_keys k WHERE k.prefix = $1 AND k.revoked_at IS NULL",
            rows::API_KEY_COLS
        );
        let Some(row) = sqlx::query(&sql)
            .bind(prefix)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let key = rows::api_key(&row)?;
        let hash: String = row.try_get("key_hash")?;
        // Coarse "last used": at most one write a minute per key.
        let now = Timestamp::now().micros();
        if key
            .last_used_at
            .is_none_or(|t| now - t.micros() > 60_000_000)
        {
            let _guard = self.single_write_guard().await;
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(key.id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some((key, hash)))
    }

    pub(crate) async fn list_custom_fields_impl(&self) -> StoreResult<Vec<CustomField>> {
        let sql = format!(
            "SELECT {} FROM custom_fields f WHERE f.entity = 'client' ORDER BY f.position, f.id",
            rows::CUSTOM_FIELD_COLS
        );
        let rs = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rs.iter().map(rows::custom_field).collect()
    }

    pub(crate) async fn create_custom_field_impl(
        &self,
        actor: &Actor,
        input: &NewCustomField,
    ) -> StoreResult<CustomField> {
        require_admin(actor)?;
        input.validate()?;
        let label = required_text("label", &input.label, Limits::NAME)?;
        let mut tx = self.write(actor).await?;
        let sql = format!(
            "INSERT INTO custom_fields (entity, key, label, field_type, options, required, position, created_at) \
             VALUES ('client', $1, $2, $3, $4, $5, $6, $7) RETURNING {}",
            rows::CUSTOM_FIELD_COLS.replace("f.", "")
        );
        let row = sqlx::query(&sql)
            .bind(&input.key)
            .bind(&label)
            .bind(input.field_type.as_str())
            .bind(serde_json::to_string(&input.options).unwrap_or_else(|_| "[]".into()))
            .bind(i64::from(input.required))
            .bind(input.position)
            .bind(tx.now.micros())
            .fetch_one(tx.conn())
            .await
            .map_err(conflict_on(
                "key",
                format!("a custom field `{}` exists", input.key),
            ))?;
        let f = rows::custom_field(&row)?;
        tx.log(Change::new("custom_field", f.id, "create", &f));
        tx.commit().await?;
        Ok(f)
    }

    pub(crate) async fn update_custom_field_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &CustomFieldPatch,
    ) -> StoreResult<CustomField> {
        require_admin(actor)?;
        let mut tx = self.write(actor).await?;
        let sql = format!(
            "SELECT {} FROM custom_fields f WHERE f.id = $1",
            rows::CUSTOM_FIELD_COLS
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound {
                entity: "custom field",
            })?;
        let before = rows::custom_field(&row)?;
        let mut f = before.clone();
        if let Some(l) = &patch.label {
            f.label = required_text("label", l, Limits::NAME)?;
        }
        if let Some(r) = patch.required {
            f.required = r;
        }
        if let Some(p) = patch.position {
            f.position = p;
        }
        if let Some(options) = &patch.options {
            if let Some(lost) = f.options.iter().find(|o| !options.contains(o)) {
                return Err(StoreError::Conflict {
                    field: "options".into(),
                    message: format!("option `{lost}` cannot be removed: client cards may hold it"),
                });
            }
            f.options = options.clone();
        }
        // The same rules as for a new field.
        NewCustomField {
            key: f.key.clone(),
            label: f.label.clone(),
            field_type: f.field_type,
            options: f.options.clone(),
            required: f.required,
            position: f.position,
        }
        .validate()?;
        if unchanged(&before, &f) {
            return Ok(before);
        }
        sqlx::query("UPDATE custom_fields SET label = $1, options = $2, required = $3, position = $4 WHERE id = $5")
            .bind(&f.label)
            .bind(serde_json::to_string(&f.options).unwrap_or_else(|_| "[]".into()))
            .bind(i64::from(f.required))
            .bind(f.position)
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.log(Change::new("custom_field", id, "update", &f));
        tx.commit().await?;
        Ok(f)
    }

    pub(crate) async fn delete_custom_field_impl(&self, actor: &Actor, id: Id) -> StoreResult<()> {
        require_admin(actor)?;
        let mut tx = self.write(actor).await?;
        let key: Option<String> =
            sqlx::query_scalar("DELETE FROM custom_fields WHERE id = $1 RETURNING key")
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
        let key = key.ok_or(StoreError::NotFound {
            entity: "custom field",
        })?;
        // Values are kept in the client rows' JSON; they are dropped from the cards lazily
        // (a card shows only defined fields) and removed here for clients that have them.
        let affected =
            sqlx::query("SELECT id, custom_fields FROM clients WHERE custom_fields LIKE $1")
                .bind(format!("%\"{key}\"%"))
                .fetch_all(tx.conn())
                .await?;
        for r in affected {
            let cid: i64 = r.try_get("id")?;
            let raw: String = r.try_get("custom_fields")?;
            if let Ok(mut map) =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&raw)
            {
                if map.remove(&key).is_some() {
                    let now = tx.now.micros();
                    let fields = serde_json::Value::Object(map);
                    sqlx::query(
                        "UPDATE clients SET custom_fields = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(fields.to_string())
                    .bind(now)
                    .bind(cid)
                    .execute(tx.conn())
                    .await?;
                    tx.log(
                        Change::new(
                            "client",
                            cid,
                            "update",
                            serde_json::json!({ "custom_fields": fields }),
                        )
                        .party(Some(cid), None),
                    );
                }
            }
        }
        tx.log(Change::new(
            "custom_field",
            id,
            "delete",
            serde_json::json!({ "key": key }),
        ));
        tx.commit().await?;
        Ok(())
    }
}

/// A phone extension as stored: 1 to 32 of `0-9 * #`; empty means none.
pub(crate) fn extension(field: &str, v: &str) -> Result<Option<String>, FieldError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.len() <= 32
        && v.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        Ok(Some(v.to_owned()))
    } else {
        Err(FieldError::new(
            field,
            "invalid_extension",
            "an extension is 1 to 32 of 0-9, * and #",
        ))
    }
}

impl SqlStore {
    /// Gives each extension to the user with the login (taking it from whoever had it).
    /// Returns a warning per pair that could not be applied.
    pub(crate) async fn assign_extensions_impl(
        &self,
        pairs: &[(String, String)],
    ) -> StoreResult<Vec<String>> {
        let mut warnings = Vec::new();
        let mut tx = self.write(&Actor::System).await?;
        for (ext, login) in pairs {
            let ext = match extension("extension", ext) {
                Ok(Some(x)) => x,
                _ => {
                    warnings.push(format!("telephony.extensions: `{ext}` is not an extension"));
                    continue;
                }
            };
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE login = $1")
                .bind(login)
                .fetch_optional(tx.conn())
                .await?;
            let Some(id) = id else {
                warnings.push(format!(
                    "telephony.extensions: no user `{login}` for extension {ext}"
                ));
                continue;
            };
            sqlx::query("UPDATE users SET extension = NULL WHERE extension = $1 AND id <> $2")
                .bind(&ext)
                .bind(id)
                .execute(tx.conn())
                .await?;
            sqlx::query("UPDATE users SET extension = $1 WHERE id = $2")
                .bind(&ext)
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(warnings)
    }
}
