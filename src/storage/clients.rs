//! Clients, contacts, identities and leads.

use serde_json::{json, Map, Value};

use super::validate_ref::*;
use super::{
    access, after_cursor, by_id, conflict_on, page_limit, page_of, rows, unchanged, Change,
    ClientQuery, Cursor, IdentityOwner, ListFilter, SqlStore, StoreError, StoreResult, WriteTx,
};
use crate::domain::validate::{
    normalize_name, optional_text, prefix_upper_bound, required_text, search_terms,
};
use crate::domain::*;

/// A validated client about to be inserted.
struct ClientDraft<'a> {
    kind: ClientKind,
    name: &'a str,
    notes: Option<String>,
    custom: &'a Map<String, Value>,
    own: Ownership,
    from_lead: Option<Id>,
}

/// Resolved owner columns of an identity.
#[derive(Debug, Clone, Copy)]
struct Owner {
    client_id: Option<Id>,
    contact_id: Option<Id>,
    lead_id: Option<Id>,
}

impl SqlStore {
    async fn insert_identity(
        &self,
        tx: &mut WriteTx,
        field: &str,
        owner: Owner,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Identity> {
        let value = self.rules.normalize(field, kind, value)?;
        let sql = format!(
            "INSERT INTO identities (kind, value, client_id, contact_id, lead_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING {}",
            rows::IDENTITY_COLS.replace("i.", "")
        );
        let row = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(&value)
            .bind(owner.client_id)
            .bind(owner.contact_id)
            .bind(owner.lead_id)
            .bind(tx.now.micros())
            .fetch_one(tx.conn())
            .await
            .map_err(conflict_on(
                field,
                format!(
                    "the {} {value} is already recorded for someone",
                    kind.as_str()
                ),
            ))?;
        let ident = rows::identity(&row)?;
        tx.log(
            Change::new("identity", ident.id, "create", &ident)
                .party(ident.client_id, ident.lead_id),
        );
        Ok(ident)
    }

    /// Rewrites a client's search terms, with the copy of its ownership that lets a search
    /// filter by access inside the term index.
    async fn write_search_terms(
        tx: &mut WriteTx,
        client_id: Id,
        name: &str,
        own: Ownership,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM client_search_terms WHERE client_id = $1")
            .bind(client_id)
            .execute(tx.conn())
            .await?;
        for term in search_terms(name) {
            sqlx::query(
                "INSERT INTO client_search_terms (term, client_id, responsible_id, department_id, shared) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(term)
            .bind(client_id)
            .bind(own.responsible_id)
            .bind(own.department_id)
            .bind(i64::from(own.shared))
            .execute(tx.conn())
            .await?;
        }
        Ok(())
    }

    async fn insert_client(&self, tx: &mut WriteTx, draft: ClientDraft<'_>) -> StoreResult<Client> {
        let ClientDraft {
            kind,
            name,
            notes,
            custom,
            own,
            from_lead,
        } = draft;
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO clients (kind, name, name_norm, notes, custom_fields, responsible_id, department_id, shared, \
             converted_from_lead_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {}",
            rows::CLIENT_COLS.replace("c.", "")
        );
        let row = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(name)
            .bind(normalize_name(name))
            .bind(notes)
            .bind(Value::Object(custom.clone()).to_string())
            .bind(own.responsible_id)
            .bind(own.department_id)
            .bind(i64::from(own.shared))
            .bind(from_lead)
            .bind(now)
            .fetch_one(tx.conn())
            .await?;
        let client = rows::client(&row)?;
        Self::write_search_terms(tx, client.id, name, own).await?;
        tx.log(
            Change::new("client", client.id, "create", &client)
                .party(Some(client.id), None)
                .department(client.department_id)
                .owner(client.responsible_id, client.shared),
        );
        Ok(client)
    }

    pub(crate) async fn create_client_impl(
        &self,
        actor: &Actor,
        input: &NewClient,
    ) -> StoreResult<ClientCard> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let name = required_text("name", &input.name, Limits::NAME)?;
        let notes = optional_text("notes", input.notes.as_deref(), Limits::TEXT)?;
        if input.identities.len() > 50 {
            return Err(
                FieldError::new("identities", "too_many", "at most 50 identities at once").into(),
            );
        }
        let defs = self.list_custom_fields_impl().await?;
        let mut custom = Map::new();
        apply_custom_fields(&defs, &mut custom, &input.custom_fields, true)?;
        let mut tx = self.write(actor).await?;
        let own = ownership(
            &mut tx,
            actor,
            input.responsible_id,
            input.department_id,
            input.shared,
        )
        .await?;
        let client = self
            .insert_client(
                &mut tx,
                ClientDraft {
                    kind: input.kind,
                    name: &name,
                    notes,
                    custom: &custom,
                    own,
                    from_lead: None,
                },
            )
            .await?;
        let mut identities = Vec::new();
        for (i, ident) in input.identities.iter().enumerate() {
            let owner = Owner {
                client_id: Some(client.id),
                contact_id: None,
                lead_id: None,
            };
            identities.push(
                self.insert_identity(
                    &mut tx,
                    &format!("identities.{i}.value"),
                    owner,
                    ident.kind,
                    &ident.value,
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(ClientCard {
            client,
            contacts: Vec::new(),
            identities,
        })
    }

    async fn client_row(&self, actor: &Actor, id: Id) -> StoreResult<Client> {
        by_id::CLIENT.fetch(&self.pool, actor, id).await
    }

    pub(crate) async fn get_client_impl(&self, actor: &Actor, id: Id) -> StoreResult<ClientCard> {
        let client = self.client_row(actor, id).await?;
        let sql = format!(
            "SELECT {} FROM contacts ct WHERE ct.client_id = $1 ORDER BY ct.name, ct.id",
            rows::CONTACT_COLS
        );
        let contacts = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::contact)
            .collect::<StoreResult<Vec<_>>>()?;
        let sql = format!(
            "SELECT {} FROM identities i WHERE i.client_id = $1 ORDER BY i.kind, i.id",
            rows::IDENTITY_COLS
        );
        let identities = sqlx::query(&sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::identity)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(ClientCard {
            client,
            contacts,
            identities,
        })
    }

    pub(crate) async fn update_client_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &ClientPatch,
    ) -> StoreResult<Client> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let defs = self.list_custom_fields_impl().await?;
        let mut tx = self.write(actor).await?;
        let mut c = by_id::CLIENT.fetch_for_update(&mut tx, actor, id).await?;
        let before = c.clone();
        let renamed = match &patch.name {
            Some(n) => {
                c.name = required_text("name", n, Limits::NAME)?;
                true
            }
            None => false,
        };
        if let Some(k) = patch.kind {
            c.kind = k;
        }
        if let Some(n) = &patch.notes {
            c.notes = optional_text("notes", Some(n), Limits::TEXT)?;
        }
        if let Some(cf) = &patch.custom_fields {
            apply_custom_fields(&defs, &mut c.custom_fields, cf, false)?;
        }
        if patch.responsible_id.is_some() || patch.department_id.is_some() {
            let own = ownership(
                &mut tx,
                actor,
                patch.responsible_id.or(c.responsible_id),
                patch.department_id,
                patch.shared.unwrap_or(c.shared),
            )
            .await?;
            c.responsible_id = own.responsible_id;
            c.department_id = own.department_id;
        }
        if let Some(s) = patch.shared {
            c.shared = s;
        }
        if unchanged(&before, &c) {
            // Nothing to write, nothing to log.
            return Ok(before);
        }
        c.updated_at = tx.now;
        sqlx::query(
            "UPDATE clients SET kind = $1, name = $2, name_norm = $3, notes = $4, custom_fields = $5, responsible_id = $6, \
             department_id = $7, shared = $8, updated_at = $9 WHERE id = $10",
        )
        .bind(c.kind.as_str())
        .bind(&c.name)
        .bind(normalize_name(&c.name))
        .bind(&c.notes)
        .bind(Value::Object(c.custom_fields.clone()).to_string())
        .bind(c.responsible_id)
        .bind(c.department_id)
        .bind(i64::from(c.shared))
        .bind(c.updated_at.micros())
        .bind(id)
        .execute(tx.conn())
        .await?;
        let own = Ownership {
            responsible_id: c.responsible_id,
            department_id: c.department_id,
            shared: c.shared,
        };
        if renamed {
            Self::write_search_terms(&mut tx, id, &c.name, own).await?;
        } else {
            sqlx::query("UPDATE client_search_terms SET responsible_id = $1, department_id = $2, shared = $3 WHERE client_id = $4")
                .bind(own.responsible_id)
                .bind(own.department_id)
                .bind(i64::from(own.shared))
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        tx.log(
            Change::new("client", id, "update", &c)
                .party(Some(id), None)
                .department(c.department_id)
                .owner(c.responsible_id, c.shared),
        );
        tx.commit().await?;
        Ok(c)
    }

    pub(crate) async fn search_clients_impl(
        &self,
        actor: &Actor,
        q: &ClientQuery,
    ) -> StoreResult<Page<Client>> {
        let limit = page_limit(q.limit);
        let vis = access::owned(actor, "c", "responsible_id");
        // Exact lookups by an identity: at most one client.
        let by_identity = if let Some(p) = &q.phone {
            Some((
                IdentityKind::Phone,
                self.rules.normalize("phone", IdentityKind::Phone, p)?,
            ))
        } else if let Some(e) = &q.email {
            Some((
                IdentityKind::Email,
                self.rules.normalize("email", IdentityKind::Email, e)?,
            ))
        } else if let Some((k, v)) = &q.messenger {
            Some((*k, self.rules.normalize("messenger_id", *k, v)?))
        } else {
            None
        };
        if let Some((kind, value)) = by_identity {
            let sql = format!(
                "SELECT {} FROM identities i JOIN clients c ON c.id = i.client_id WHERE i.kind = $1 AND i.value = $2 AND {vis}",
                rows::CLIENT_COLS
            );
            let rs = sqlx::query(&sql)
                .bind(kind.as_str())
                .bind(value)
                .fetch_all(&self.pool)
                .await?;
            let items = rs
                .iter()
                .map(rows::client)
                .collect::<StoreResult<Vec<_>>>()?;
            return Ok(Page {
                items,
                next_cursor: None,
            });
        }
        let prefix = q.q.as_deref().map(normalize_name).unwrap_or_default();
        let prefix: String = prefix
            .split(|c: char| !c.is_alphanumeric())
            .find(|w| !w.is_empty())
            .unwrap_or("")
            .to_owned();
        if prefix.is_empty() {
            // No query: everything visible, by name.
            let position = Cursor::text_position(q.cursor.as_ref())?;
            let (after, n) = after_cursor("c.name_norm, c.id", false, position.is_some(), 1);
            let sql = format!(
                "SELECT {} FROM clients c WHERE {vis} {after} ORDER BY c.name_norm, c.id LIMIT ${n}",
                rows::CLIENT_COLS
            );
            let mut query = sqlx::query(&sql);
            if let Some((k, i)) = position {
                query = query.bind(k).bind(i);
            }
            let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
            let mut items = Vec::with_capacity(rs.len());
            for r in &rs {
                items.push((rows::client(r)?, rows::text(r, "name_norm")?));
            }
            let page = page_of(items, limit, |(c, norm)| Cursor::text(norm.clone(), c.id));
            return Ok(Page {
                items: page.items.into_iter().map(|(c, _)| c).collect(),
                next_cursor: page.next_cursor,
            });
        }
        // Word-prefix search: walk the term index in order; each client is listed once, at its
        // first matching word.
        let upper = prefix_upper_bound(&prefix).unwrap_or_else(|| format!("{prefix}\u{10FFFF}"));
        let position = Cursor::text_position(q.cursor.as_ref())?;
        // Access is checked on the term rows' copy of the ownership: inside the index.
        let vis_terms = access::owned(actor, "t", "responsible_id");
        let (after, n) = after_cursor("t.term, t.client_id", false, position.is_some(), 3);
        let sql = format!(
            "SELECT {}, t.term FROM client_search_terms t JOIN clients c ON c.id = t.client_id \
             WHERE t.term >= $1 AND t.term < $2 AND {vis_terms} {after} \
             AND NOT EXISTS (SELECT 1 FROM client_search_terms t2 WHERE t2.client_id = t.client_id AND t2.term >= $1 AND t2.term < t.term) \
             ORDER BY t.term, t.client_id LIMIT ${n}",
            rows::CLIENT_COLS
        );
        let mut query = sqlx::query(&sql).bind(&prefix).bind(&upper);
        if let Some((k, i)) = position {
            query = query.bind(k).bind(i);
        }
        let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let mut items = Vec::with_capacity(rs.len());
        for r in &rs {
            items.push((rows::client(r)?, rows::text(r, "term")?));
        }
        let page = page_of(items, limit, |(c, term)| Cursor::text(term.clone(), c.id));
        Ok(Page {
            items: page.items.into_iter().map(|(c, _)| c).collect(),
            next_cursor: page.next_cursor,
        })
    }

    pub(crate) async fn create_contact_impl(
        &self,
        actor: &Actor,
        client_id: Id,
        input: &NewContact,
    ) -> StoreResult<Contact> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let name = required_text("name", &input.name, Limits::NAME)?;
        let position = optional_text("position", input.position.as_deref(), Limits::SHORT)?;
        let notes = optional_text("notes", input.notes.as_deref(), Limits::TEXT)?;
        if input.identities.len() > 50 {
            return Err(
                FieldError::new("identities", "too_many", "at most 50 identities at once").into(),
            );
        }
        let mut tx = self.write(actor).await?;
        visible_client(&mut tx, actor, "client_id", client_id)
            .await
            .map_err(|_| StoreError::NotFound { entity: "client" })?;
        let sql = format!(
            "INSERT INTO contacts (client_id, name, position, notes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING {}",
            rows::CONTACT_COLS.replace("ct.", "")
        );
        let row = sqlx::query(&sql)
            .bind(client_id)
            .bind(&name)
            .bind(position)
            .bind(notes)
            .bind(tx.now.micros())
            .fetch_one(tx.conn())
            .await?;
        let contact = rows::contact(&row)?;
        tx.log(Change::new("contact", contact.id, "create", &contact).party(Some(client_id), None));
        for (i, ident) in input.identities.iter().enumerate() {
            let owner = Owner {
                client_id: Some(client_id),
                contact_id: Some(contact.id),
                lead_id: None,
            };
            self.insert_identity(
                &mut tx,
                &format!("identities.{i}.value"),
                owner,
                ident.kind,
                &ident.value,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(contact)
    }

    pub(crate) async fn get_contact_impl(&self, actor: &Actor, id: Id) -> StoreResult<Contact> {
        by_id::CONTACT.fetch(&self.pool, actor, id).await
    }

    pub(crate) async fn update_contact_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &ContactPatch,
    ) -> StoreResult<Contact> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let mut c = by_id::CONTACT.fetch_for_update(&mut tx, actor, id).await?;
        let before = c.clone();
        if let Some(n) = &patch.name {
            c.name = required_text("name", n, Limits::NAME)?;
        }
        if let Some(p) = &patch.position {
            c.position = optional_text("position", Some(p), Limits::SHORT)?;
        }
        if let Some(n) = &patch.notes {
            c.notes = optional_text("notes", Some(n), Limits::TEXT)?;
        }
        if unchanged(&before, &c) {
            // Nothing to write, nothing to log.
            return Ok(before);
        }
        c.updated_at = tx.now;
        sqlx::query("UPDATE contacts SET name = $1, position = $2, notes = $3, updated_at = $4 WHERE id = $5")
            .bind(&c.name)
            .bind(&c.position)
            .bind(&c.notes)
            .bind(c.updated_at.micros())
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.log(Change::new("contact", id, "update", &c).party(Some(c.client_id), None));
        tx.commit().await?;
        Ok(c)
    }

    pub(crate) async fn add_identity_impl(
        &self,
        actor: &Actor,
        owner: IdentityOwner,
        input: &IdentityInput,
    ) -> StoreResult<Identity> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let owner = match owner {
            IdentityOwner::Client(c) => {
                visible_client(&mut tx, actor, "client_id", c).await?;
                Owner {
                    client_id: Some(c),
                    contact_id: None,
                    lead_id: None,
                }
            }
            IdentityOwner::Contact(ct) => {
                let client_id: Option<i64> =
                    sqlx::query_scalar("SELECT client_id FROM contacts WHERE id = $1")
                        .bind(ct)
                        .fetch_optional(tx.conn())
                        .await?;
                let client_id = client_id.ok_or_else(|| {
                    StoreError::Invalid(FieldError::new(
                        "contact_id",
                        "not_found",
                        format!("contact {ct} does not exist"),
                    ))
                })?;
                visible_client(&mut tx, actor, "contact_id", client_id)
                    .await
                    .map_err(|_| {
                        StoreError::Invalid(FieldError::new(
                            "contact_id",
                            "not_found",
                            format!("contact {ct} does not exist"),
                        ))
                    })?;
                Owner {
                    client_id: Some(client_id),
                    contact_id: Some(ct),
                    lead_id: None,
                }
            }
            IdentityOwner::Lead(l) => {
                visible_lead(&mut tx, actor, "lead_id", l).await?;
                Owner {
                    client_id: None,
                    contact_id: None,
                    lead_id: Some(l),
                }
            }
        };
        let ident = self
            .insert_identity(&mut tx, "value", owner, input.kind, &input.value)
            .await?;
        tx.commit().await?;
        Ok(ident)
    }

    pub(crate) async fn find_identity_impl(
        &self,
        actor: &Actor,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Option<Identity>> {
        let value = self.rules.normalize("value", kind, value)?;
        let sql = format!(
            "SELECT {} FROM identities i WHERE i.kind = $1 AND i.value = $2 AND {}",
            rows::IDENTITY_COLS,
            access::party_visible(actor, "i")
        );
        let row = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::identity).transpose()
    }

    pub(crate) async fn delete_identity_impl(&self, actor: &Actor, id: Id) -> StoreResult<()> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let sql = format!(
            "SELECT {} FROM identities i WHERE i.id = $1 AND {}",
            rows::IDENTITY_COLS,
            access::party_visible(actor, "i")
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound { entity: "identity" })?;
        let ident = rows::identity(&row)?;
        // Dialogs keep their history; they just lose the link to the identity.
        let unlinked: Vec<i64> = sqlx::query_scalar(
            "UPDATE dialogs SET identity_id = NULL WHERE identity_id = $1 RETURNING id",
        )
        .bind(id)
        .fetch_all(tx.conn())
        .await?;
        for d in unlinked {
            tx.log(
                Change::new("dialog", d, "update", json!({ "identity_id": null })).dialog(Some(d)),
            );
        }
        sqlx::query("DELETE FROM identities WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.log(Change::new("identity", id, "delete", &ident).party(ident.client_id, ident.lead_id));
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn create_lead_impl(
        &self,
        actor: &Actor,
        input: &NewLead,
    ) -> StoreResult<Lead> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let phone = match optional_text("phone", input.phone.as_deref(), Limits::IDENTITY)? {
            Some(p) => Some(self.rules.normalize("phone", IdentityKind::Phone, &p)?),
            None => None,
        };
        let email = match optional_text("email", input.email.as_deref(), Limits::IDENTITY)? {
            Some(e) => Some(normalize_email("email", &e)?),
            None => None,
        };
        let name = match optional_text("name", input.name.as_deref(), Limits::NAME)? {
            Some(n) => n,
            None => phone.clone().or_else(|| email.clone()).ok_or_else(|| {
                FieldError::new(
                    "name",
                    "required",
                    "a lead needs a name, a phone or an email",
                )
            })?,
        };
        let company = optional_text("company_name", input.company_name.as_deref(), Limits::NAME)?;
        let source = optional_text("source", input.source.as_deref(), Limits::SHORT)?;
        if input.identities.len() > 50 {
            return Err(
                FieldError::new("identities", "too_many", "at most 50 identities at once").into(),
            );
        }
        let mut tx = self.write(actor).await?;
        let own = ownership(
            &mut tx,
            actor,
            input.responsible_id,
            input.department_id,
            input.shared,
        )
        .await?;
        let lead = self
            .insert_lead(&mut tx, &name, company, &phone, &email, source, own)
            .await?;
        let owner = Owner {
            client_id: None,
            contact_id: None,
            lead_id: Some(lead.id),
        };
        if let Some(p) = &phone {
            self.insert_identity(&mut tx, "phone", owner, IdentityKind::Phone, p)
                .await?;
        }
        if let Some(e) = &email {
            self.insert_identity(&mut tx, "email", owner, IdentityKind::Email, e)
                .await?;
        }
        for (i, ident) in input.identities.iter().enumerate() {
            self.insert_identity(
                &mut tx,
                &format!("identities.{i}.value"),
                owner,
                ident.kind,
                &ident.value,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(lead)
    }

    /// Inserts a lead row and logs it (identities are the caller's).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_lead(
        &self,
        tx: &mut WriteTx,
        name: &str,
        company: Option<String>,
        phone: &Option<String>,
        email: &Option<String>,
        source: Option<String>,
        own: Ownership,
    ) -> StoreResult<Lead> {
        let now = tx.now.micros();
        let sql = format!(
            "INSERT INTO leads (name, company_name, phone, email, source, status, responsible_id, department_id, shared, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $9) RETURNING {}",
            rows::LEAD_COLS.replace("l.", "")
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(company)
            .bind(phone)
            .bind(email)
            .bind(source)
            .bind(own.responsible_id)
            .bind(own.department_id)
            .bind(i64::from(own.shared))
            .bind(now)
            .fetch_one(tx.conn())
            .await?;
        let lead = rows::lead(&row)?;
        tx.log(
            Change::new("lead", lead.id, "create", &lead)
                .party(None, Some(lead.id))
                .department(lead.department_id)
                .owner(lead.responsible_id, lead.shared),
        );
        Ok(lead)
    }

    /// Adds an identity of a lead.
    pub(crate) async fn add_lead_identity(
        &self,
        tx: &mut WriteTx,
        lead_id: Id,
        kind: IdentityKind,
        value: &str,
    ) -> StoreResult<Identity> {
        let owner = Owner {
            client_id: None,
            contact_id: None,
            lead_id: Some(lead_id),
        };
        self.insert_identity(tx, "identities", owner, kind, value)
            .await
    }

    pub(crate) async fn get_lead_impl(&self, actor: &Actor, id: Id) -> StoreResult<Lead> {
        by_id::LEAD.fetch(&self.pool, actor, id).await
    }

    pub(crate) async fn list_leads_impl(
        &self,
        actor: &Actor,
        f: &ListFilter,
    ) -> StoreResult<Page<Lead>> {
        let limit = page_limit(f.limit);
        let position = Cursor::int_position(f.cursor.as_ref())?;
        let (after, n) = after_cursor("l.created_at, l.id", true, position.is_some(), 3);
        let sql = format!(
            "SELECT {} FROM leads l WHERE {} AND ($1 IS NULL OR l.status = $1) AND ($2 IS NULL OR l.responsible_id = $2) \
             {after} ORDER BY l.created_at DESC, l.id DESC LIMIT ${n}",
            rows::LEAD_COLS,
            access::owned(actor, "l", "responsible_id")
        );
        let mut query = sqlx::query(&sql).bind(f.status.as_deref()).bind(f.user_id);
        if let Some((k, i)) = position {
            query = query.bind(k).bind(i);
        }
        let rs = query.bind(limit + 1).fetch_all(&self.pool).await?;
        let items = rs.iter().map(rows::lead).collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, limit, |l| {
            Cursor::int(l.created_at.micros(), l.id)
        }))
    }

    pub(crate) async fn update_lead_impl(
        &self,
        actor: &Actor,
        id: Id,
        patch: &LeadPatch,
    ) -> StoreResult<Lead> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        let mut tx = self.write(actor).await?;
        let mut l = by_id::LEAD.fetch_for_update(&mut tx, actor, id).await?;
        let before = l.clone();
        if l.status == LeadStatus::Converted {
            return Err(StoreError::Conflict {
                field: "status".into(),
                message: "the lead was converted; change the client instead".into(),
            });
        }
        if let Some(n) = &patch.name {
            l.name = required_text("name", n, Limits::NAME)?;
        }
        if let Some(c) = &patch.company_name {
            l.company_name = optional_text("company_name", Some(c), Limits::NAME)?;
        }
        if let Some(s) = &patch.source {
            l.source = optional_text("source", Some(s), Limits::SHORT)?;
        }
        if let Some(s) = patch.status {
            if s == LeadStatus::Converted {
                return Err(FieldError::new(
                    "status",
                    "invalid_status",
                    "convert a lead with POST /leads/{id}/convert",
                )
                .into());
            }
            l.status = s;
        }
        if patch.responsible_id.is_some() || patch.department_id.is_some() {
            let own = ownership(
                &mut tx,
                actor,
                patch.responsible_id.or(l.responsible_id),
                patch.department_id,
                l.shared,
            )
            .await?;
            l.responsible_id = own.responsible_id;
            l.department_id = own.department_id;
        }
        if let Some(s) = patch.shared {
            l.shared = s;
        }
        if unchanged(&before, &l) {
            // Nothing to write, nothing to log.
            return Ok(before);
        }
        l.updated_at = tx.now;
        sqlx::query(
            "UPDATE leads SET name = $1, company_name = $2, source = $3, status = $4, responsible_id = $5, department_id = $6, \
             shared = $7, updated_at = $8 WHERE id = $9",
        )
        .bind(&l.name)
        .bind(&l.company_name)
        .bind(&l.source)
        .bind(l.status.as_str())
        .bind(l.responsible_id)
        .bind(l.department_id)
        .bind(i64::from(l.shared))
        .bind(l.updated_at.micros())
        .bind(id)
        .execute(tx.conn())
        .await?;
        tx.log(
            Change::new("lead", id, "update", &l)
                .party(None, Some(id))
                .department(l.department_id)
                .owner(l.responsible_id, l.shared),
        );
        tx.commit().await?;
        Ok(l)
    }

    pub(crate) async fn convert_lead_impl(
        &self,
        actor: &Actor,
        id: Id,
        input: &ConvertLead,
    ) -> StoreResult<LeadConversion> {
        if !actor.has_scope(Scope::ClientsWrite) {
            return Err(StoreError::Forbidden(
                "this needs the clients:write scope".into(),
            ));
        }
        // Read before the transaction: a pool read while holding a transaction connection can
        // exhaust the pool under load.
        let defs = self.list_custom_fields_impl().await?;
        let mut tx = self.write(actor).await?;
        let mut lead = by_id::LEAD.fetch_for_update(&mut tx, actor, id).await?;
        if lead.status != LeadStatus::Open {
            return Err(StoreError::Conflict {
                field: "status".into(),
                message: format!(
                    "the lead is {}; only open leads convert",
                    lead.status.as_str()
                ),
            });
        }
        // Claim the lead first: of two concurrent conversions (PostgreSQL runs them in
        // parallel) the second waits on this row and then finds it no longer open.
        let claimed = sqlx::query("UPDATE leads SET status = 'converted', updated_at = $1 WHERE id = $2 AND status = 'open'")
            .bind(tx.now.micros())
            .bind(id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        if claimed != 1 {
            return Err(StoreError::Conflict {
                field: "status".into(),
                message: "the lead is being or has been converted".into(),
            });
        }
        let client = match input.client_id {
            Some(cid) => visible_client(&mut tx, actor, "client_id", cid).await?,
            None => {
                let name = match &input.name {
                    Some(n) => required_text("name", n, Limits::NAME)?,
                    None => lead
                        .company_name
                        .clone()
                        .unwrap_or_else(|| lead.name.clone()),
                };
                let kind = input.kind.unwrap_or(if lead.company_name.is_some() {
                    ClientKind::Company
                } else {
                    ClientKind::Person
                });
                // The client goes to the manager handling the lead's open Interest, else the
                // lead's responsible manager.
                let handler: Option<i64> = sqlx::query_scalar(
                    "SELECT responsible_id FROM interests WHERE lead_id = $1 AND status = 'open' AND responsible_id IS NOT NULL \
                     ORDER BY updated_at DESC, id DESC LIMIT 1",
                )
                .bind(id)
                .fetch_optional(tx.conn())
                .await?
                .flatten();
                let responsible = handler.or(lead.responsible_id).or(actor.user_id());
                let dept = match responsible {
                    Some(r) => user_department(&mut tx, "responsible_id", r)
                        .await
                        .ok()
                        .flatten(),
                    None => None,
                }
                .or(lead.department_id);
                let own = Ownership {
                    responsible_id: responsible,
                    department_id: dept,
                    shared: lead.shared,
                };
                if let Some(req) = defs.iter().find(|d| d.required) {
                    return Err(FieldError::new(
                        format!("custom_fields.{}", req.key),
                        "required",
                        format!("{} is required on clients; create the client first and convert into it", req.label),
                    )
                    .into());
                }
                self.insert_client(
                    &mut tx,
                    ClientDraft {
                        kind,
                        name: &name,
                        notes: None,
                        custom: &Map::new(),
                        own,
                        from_lead: Some(id),
                    },
                )
                .await?
            }
        };
        let contact = if input.create_contact {
            let sql = format!(
                "INSERT INTO contacts (client_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING {}",
                rows::CONTACT_COLS.replace("ct.", "")
            );
            let row = sqlx::query(&sql)
                .bind(client.id)
                .bind(&lead.name)
                .bind(tx.now.micros())
                .fetch_one(tx.conn())
                .await?;
            let c = rows::contact(&row)?;
            tx.log(Change::new("contact", c.id, "create", &c).party(Some(client.id), None));
            Some(c)
        } else {
            None
        };
        let contact_id = contact.as_ref().map(|c| c.id);
        let mut moved = Map::new();
        for (table, entity) in [
            ("identities", "identity"),
            ("interests", "interest"),
            ("interactions", "interaction"),
            ("dialogs", "dialog"),
            ("calls", "call"),
            ("feed_entries", ""),
        ] {
            let sql = format!(
                "UPDATE {table} SET client_id = $1, contact_id = COALESCE(contact_id, $2), lead_id = NULL \
                 WHERE lead_id = $3 RETURNING id"
            );
            let ids: Vec<i64> = sqlx::query_scalar(&sql)
                .bind(client.id)
                .bind(contact_id)
                .bind(id)
                .fetch_all(tx.conn())
                .await?;
            moved.insert(table.to_owned(), json!(ids.len()));
            // Every moved record gets its own entry, so a console showing it follows the move.
            if !entity.is_empty() {
                for moved_id in ids {
                    let mut change = Change::new(
                        entity,
                        moved_id,
                        "move",
                        json!({ "client_id": client.id, "contact_id": contact_id, "from_lead_id": id }),
                    )
                    .party(Some(client.id), Some(id));
                    if entity == "dialog" {
                        change = change.dialog(Some(moved_id));
                    }
                    tx.log(change);
                }
            }
        }
        lead.status = LeadStatus::Converted;
        lead.converted_client_id = Some(client.id);
        lead.converted_at = Some(tx.now);
        lead.updated_at = tx.now;
        sqlx::query("UPDATE leads SET status = 'converted', converted_client_id = $1, converted_at = $2, updated_at = $2 WHERE id = $3")
            .bind(client.id)
            .bind(tx.now.micros())
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.log(
            Change::new(
                "lead",
                id,
                "convert",
                json!({ "lead": &lead, "client_id": client.id, "moved": &moved }),
            )
            .party(Some(client.id), Some(id))
            .department(client.department_id),
        );
        tx.commit().await?;
        Ok(LeadConversion {
            lead,
            client,
            contact,
            moved,
        })
    }
}
