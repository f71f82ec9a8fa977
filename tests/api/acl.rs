//! Access control through the HTTP API: each role against each entity.
//!
//! Manager `m1` of department A creates a client (with a contact and identities), a lead, an
//! Interest, an interaction, a dialog with a message and a call, all through HTTP and all
//! unshared. Every principal then reads and writes them; `m1` shares them with A and the reads
//! run again. Further tests cover API key scopes and revocation, the admin endpoints, and who
//! may make whom responsible for a record.
//!
//! The request tables are text, one request a line, columns separated by spaces: `{name}`
//! stands for an id (see [`Vars`]), `-` for no body, and paths are under `/api/v1`.

use kommutator::domain::{Role, Scope};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

/// What `m1` creates, in order: the name its id gets (`-` for none), method, path, body. Leads
/// are shared with the department by default and dialogs open in its shared queue: `m1` makes
/// them private.
const SEED: &str = r#"
c    POST  /clients               {"kind":"company","name":"Zircon","identities":[{"kind":"phone","value":"+74951112233"}]}
k    POST  /clients/{c}/contacts  {"name":"Peter","identities":[{"kind":"telegram","value":"555111"}]}
l    POST  /leads                 {"name":"Maria","phone":"+79162223344","shared":false}
i    POST  /interests             {"title":"Deal","client_id":{c}}
x    POST  /interactions          {"kind":"note","subject":"Called","client_id":{c}}
d    POST  /dialogs               {"channel":"telegram","connector_id":"tg","external_thread_id":"t-1","client_id":{c},"assignee_id":{m1}}
-    PATCH /dialogs/{d}           {"shared":false}
msg  POST  /dialogs/{d}/messages  {"body":"Hello"}
call POST  /calls                 {"connector_id":"pbx","external_id":"c-1","direction":"inbound","from_number":"+74951112233","to_number":"101","operator_id":{m1},"client_id":{c}}
"#;

/// Reads of `m1`'s records: path; what someone who may not see them gets (`404`, or `200`
/// without the record); the id the answer lists when the record is visible.
const READS: &str = r"
/clients/{c}                                        404
/clients?limit=200                                  200 {c}
/clients?q=zirc                                     200 {c}
/clients?phone=%2B74951112233                       200 {c}
/contacts/{k}                                       404
/identities/lookup?kind=phone&value=%2B74951112233  404
/identities/lookup?kind=telegram&value=555111       404
/leads/{l}                                          404
/leads                                              200 {l}
/identities/lookup?kind=phone&value=%2B79162223344  404
/interests/{i}                                      404
/interests/{i}/stages                               404
/interests                                          200 {i}
/interactions/{x}                                   404
/interactions                                       200 {x}
/dialogs/{d}                                        404
/dialogs                                            200 {d}
/dialogs/{d}/messages                               404 {msg}
/calls/{call}                                       404
/calls                                              200 {call}
/clients/{c}/feed                                   404
/contacts/{k}/feed                                  404
/leads/{l}/feed                                     404
/interests/{i}/feed                                 404
";

/// Writes on `m1`'s records: method, path, what someone who may not see them gets (`404`, or
/// when the body names the record, 422 `not_found` on that field, as for a missing record),
/// body.
const WRITES: &str = r#"
PATCH  /clients/{c}             404          {"name":"Hijacked"}
PATCH  /clients/{c}             404          {"shared":true}
POST   /clients/{c}/contacts    404          {"name":"Spy"}
PATCH  /contacts/{k}            404          {"name":"Spy"}
POST   /identities              client_id    {"kind":"email","value":"spy@example.com","client_id":{c}}
POST   /identities              contact_id   {"kind":"email","value":"spy@example.com","contact_id":{k}}
POST   /identities              lead_id      {"kind":"email","value":"spy@example.com","lead_id":{l}}
DELETE /identities/{ident}      404          -
PATCH  /leads/{l}               404          {"name":"Spy"}
PATCH  /leads/{l}               404          {"shared":true}
POST   /leads/{l}/convert       404          {}
PATCH  /interests/{i}           404          {"title":"Spy"}
PATCH  /interests/{i}           404          {"shared":true}
POST   /interests/{i}/stage     404          {"stage_id":{st}}
POST   /interests               client_id    {"title":"Spy","client_id":{c}}
POST   /interests               lead_id      {"title":"Spy","lead_id":{l}}
PATCH  /interactions/{x}        404          {"subject":"Spy"}
POST   /interactions            client_id    {"kind":"note","subject":"Spy","client_id":{c}}
POST   /interactions            interest_id  {"kind":"note","subject":"Spy","interest_id":{i}}
PATCH  /dialogs/{d}             404          {"status":"closed"}
PATCH  /dialogs/{d}             404          {"shared":true}
POST   /dialogs/{d}/messages    404          {"body":"Spy"}
POST   /messages/{msg}/delivery 404          {"status":"sent"}
POST   /dialogs                 client_id    {"channel":"tg","connector_id":"tg","external_thread_id":"spy","client_id":{c}}
PATCH  /calls/{call}            404          {"status":"answered"}
POST   /calls                   client_id    {"connector_id":"pbx","external_id":"spy","direction":"outbound","from_number":"101","to_number":"+74951112233","client_id":{c}}
"#;

/// Requests an API key with `clients:read` and `dialogs:write` may not make: method, path,
/// the scope the answer names, body.
const SCOPED: &str = r#"
POST   /clients              clients:write       {"kind":"person","name":"X"}
PATCH  /clients/{c}          clients:write       {"name":"X"}
POST   /identities           clients:write       {"kind":"email","value":"x@example.com","client_id":{c}}
DELETE /identities/{ident}   clients:write       -
PATCH  /leads/{l}            clients:write       {"name":"X"}
GET    /interests            interests:read      -
GET    /interests/{i}        interests:read      -
POST   /interests/{i}/stage  interests:write     {"stage_id":{st}}
GET    /interactions/{x}     interactions:read   -
GET    /clients/{c}/feed     interactions:read   -
POST   /interactions         interactions:write  {"kind":"note","subject":"X","client_id":{c}}
GET    /calls/{call}         calls:read          -
PATCH  /calls/{call}         calls:write         {"status":"answered"}
GET    /changes              changes:read        -
GET    /audit                admin               -
POST   /departments          admin               {"name":"C"}
"#;

/// Admin endpoints: method, path, body.
const ADMIN: &str = r#"
POST   /users             {"login":"newbie","name":"N","role":"manager","department_id":{A},"password":"long-password-1234"}
PATCH  /users/{m2}        {"name":"Manager-Two"}
GET    /api-keys          -
POST   /api-keys          {"name":"crm","scopes":["clients:read"]}
DELETE /api-keys/{spare}  -
POST   /custom-fields     {"key":"vip","label":"VIP","field_type":"string"}
GET    /audit             -
POST   /sales-scenarios   {"name":"Renewals","stages":[{"name":"Offer"},{"name":"Signed","outcome":"won"}]}
POST   /departments       {"name":"C"}
"#;

/// Assignments refused with 403: who, method, path, body. `{own}` is a client of `m1`.
const REFUSED: &str = r#"
m1   POST   /clients       {"kind":"person","name":"X","responsible_id":{m2}}
m1   POST   /clients       {"kind":"person","name":"X","department_id":{B}}
m1   POST   /leads         {"name":"X","responsible_id":{m2}}
m1   POST   /interests     {"title":"X","client_id":{own},"responsible_id":{m2}}
m1   POST   /interactions  {"kind":"note","subject":"X","client_id":{own},"responsible_id":{m2}}
m1   PATCH  /clients/{own} {"responsible_id":{m2}}
m1   PATCH  /clients/{own} {"department_id":{B}}
opb  POST   /clients       {"kind":"person","name":"X","responsible_id":{sup}}
sup  POST   /clients       {"kind":"person","name":"X","responsible_id":{opb}}
sup  POST   /clients       {"kind":"person","name":"X","responsible_id":{opb},"department_id":{A}}
sup  POST   /clients       {"kind":"person","name":"X","department_id":{B}}
sup  POST   /leads         {"name":"X","responsible_id":{opb}}
sup  POST   /interests     {"title":"X","client_id":{own},"responsible_id":{opb}}
sup  PATCH  /clients/{own} {"responsible_id":{opb}}
"#;

/// Ids by name, for the tables.
#[derive(Default)]
struct Vars(Vec<(String, i64)>);

impl Vars {
    fn set(&mut self, name: &str, id: i64) {
        self.0.push((format!("{{{name}}}"), id));
    }

    /// `s` with its `{name}`s replaced.
    fn fill(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (k, v) in &self.0 {
            s = s.replace(k, &v.to_string());
        }
        s
    }

    /// The table's lines, filled, split into columns.
    fn table(&self, t: &str) -> Vec<Vec<String>> {
        let lines = t.lines().filter(|l| !l.trim().is_empty());
        let split = |l: &str| self.fill(l).split_whitespace().map(str::to_owned).collect();
        lines.map(split).collect()
    }
}

type Answer = (StatusCode, Value);

/// An expected error: status and code.
type Want = (StatusCode, &'static str);
const NOT_FOUND: Want = (StatusCode::NOT_FOUND, "not_found");
const UNKNOWN_REF: Want = (StatusCode::UNPROCESSABLE_ENTITY, "not_found");
const UNAUTHENTICATED: Want = (StatusCode::UNAUTHORIZED, "unauthenticated");
const FORBIDDEN: Want = (StatusCode::FORBIDDEN, "forbidden");

/// Asserts an error answer (and the field at fault, when given), naming the request.
#[track_caller]
fn err(got: &Answer, want: Want, field: Option<&str>, ctx: &str) {
    let found = (got.0, got.1["error"]["code"].as_str());
    assert_eq!(found, (want.0, Some(want.1)), "{ctx}: {}", got.1);
    assert_error(got, want.0, want.1, field);
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
}

fn ids(page: &Value) -> Vec<i64> {
    let items = page["items"].as_array().map(Vec::as_slice);
    let items = items.unwrap_or_default().iter();
    items.filter_map(|v| v["id"].as_i64()).collect()
}

/// Departments A and B, one principal per role, and the ids for the tables.
struct World {
    app: TestApp,
    sup: Principal,
    m1: Principal,
    m2: Principal,
    op_b: Principal,
    /// An API key with every scope but `admin`.
    key: Principal,
    vars: Vars,
}

async fn world() -> World {
    let app = spawn_app().await;
    let (a, b) = (app.department("A").await, app.department("B").await);
    let sup = app.user("sup_a", Role::Supervisor, Some(a)).await;
    let m1 = app.user("m1", Role::Manager, Some(a)).await;
    let m2 = app.user("m2", Role::Manager, Some(a)).await;
    let op_b = app.user("op_b", Role::Operator, Some(b)).await;
    let scopes = Scope::ALL.into_iter().filter(|s| *s != Scope::Admin);
    let key = app.api_key(&scopes.collect::<Vec<_>>()).await;
    let mut vars = Vars::default();
    let named = [("A", a), ("B", b), ("sup", sup.id), ("m1", m1.id)];
    for (k, v) in named.into_iter().chain([("m2", m2.id), ("opb", op_b.id)]) {
        vars.set(k, v);
    }
    World {
        app,
        sup,
        m1,
        m2,
        op_b,
        key,
        vars,
    }
}

impl World {
    /// Sends a request from a table row: method, path under `/api/v1`, body or `-`.
    async fn send(&self, who: Option<&Principal>, m: &str, path: &str, body: &str) -> Answer {
        let method = Method::from_bytes(m.as_bytes()).expect("method");
        let body: Option<Value> = (body != "-").then(|| serde_json::from_str(body).expect(body));
        let path = format!("/api/v1{path}");
        self.app.request(method, who, &path, body.as_ref()).await
    }

    /// Sends a request that must succeed; returns the answer's body.
    async fn ok(&self, who: Option<&Principal>, m: &str, path: &str, body: &str) -> Value {
        let (status, v) = self.send(who, m, path, body).await;
        let ctx = format!("{m} {path} {body} by {:?}", who.map(|p| p.id));
        assert!(status.is_success(), "{ctx}: {status} {v}");
        v
    }

    /// The id named `name` in the tables.
    fn var(&self, name: &str) -> i64 {
        self.vars.fill(&format!("{{{name}}}")).parse().expect(name)
    }
}

/// `m1` creates one record of each kind (see [`SEED`]); their ids go into `w.vars`.
async fn seed(w: &mut World) {
    for line in SEED.lines().filter(|l| !l.trim().is_empty()) {
        let row = w.vars.table(line).remove(0);
        let v = w.ok(Some(&w.m1), &row[1], &row[2], &row[3]).await;
        // A record is its creator's, filed under their department.
        let owner = [(w.m1.id, "responsible_id"), (w.m1.id, "assignee_id")];
        for (want, key) in owner.into_iter().chain([(w.var("A"), "department_id")]) {
            assert!(v.get(key).is_none_or(|got| *got == want), "{line}: {v}");
        }
        if row[0] != "-" {
            w.vars.set(&row[0], id(&v));
        }
        if row[0] == "c" {
            w.vars.set("ident", id(&v["identities"][0]));
        }
    }
    let scenarios = w.ok(Some(&w.m1), "GET", "/sales-scenarios", "-").await;
    w.vars.set("st", id(&scenarios[0]["stages"][1]));
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sees {
    Yes,
    No,
    Anonymous,
}

/// Runs every read as every principal; returns the number of cases.
async fn check_reads(w: &World, cast: &[(&str, Option<&Principal>, Sees)]) -> usize {
    let mut n = 0;
    for row in w.vars.table(READS) {
        let (path, gated, item) = (&row[0], row[1] == "404", row.get(2));
        for (who, p, sees) in cast {
            let got = w.send(*p, "GET", path, "-").await;
            let ctx = format!("{who} GET {path}");
            n += 1;
            match sees {
                Sees::Anonymous => err(&got, UNAUTHENTICATED, None, &ctx),
                Sees::No if gated => err(&got, NOT_FOUND, None, &ctx),
                _ => {
                    assert_eq!(got.0, StatusCode::OK, "{ctx}: {}", got.1);
                    if let Some(item) = item.and_then(|i| i.parse().ok()) {
                        let listed = ids(&got.1).contains(&item);
                        assert_eq!(listed, *sees == Sees::Yes, "{ctx} lists {item}: {}", got.1);
                    }
                }
            }
        }
    }
    n
}

/// Everything the admin sees of the records.
async fn admin_view(w: &World) -> Vec<Value> {
    let mut all = Vec::new();
    for row in w.vars.table(READS) {
        all.push(w.ok(Some(&w.app.admin), "GET", &row[0], "-").await);
    }
    all
}

/// Runs every write as a principal who may not see the records: refused, nothing written.
async fn check_hidden_writes(w: &World, who: &str, p: Option<&Principal>) -> usize {
    let (before, seq) = (admin_view(w).await, w.app.last_seq().await);
    let rows = w.vars.table(WRITES);
    for row in &rows {
        let got = w.send(p, &row[0], &row[1], &row[3]).await;
        let ctx = format!("{who} {}", row.join(" "));
        match (p, row[2].as_str()) {
            (None, _) => err(&got, UNAUTHENTICATED, None, &ctx),
            (Some(_), "404") => err(&got, NOT_FOUND, None, &ctx),
            (Some(_), f) => err(&got, UNKNOWN_REF, Some(f), &ctx),
        }
    }
    assert_eq!(w.app.last_seq().await, seq, "{who}: nothing may be written");
    let after = admin_view(w).await;
    assert!(after == before, "{who}: the records must not change");
    rows.len()
}

const SHARE: &str = r#"{"shared":true}"#;
const UNSHARE: &str = r#"{"shared":false}"#;

#[tokio::test]
async fn records_follow_responsibility_and_department_sharing() {
    let mut w = world().await;
    seed(&mut w).await;
    let w = &w;
    let cast = |m2: Sees| {
        vec![
            ("admin", Some(&w.app.admin), Sees::Yes),
            ("api key", Some(&w.key), Sees::Yes),
            ("supervisor A", Some(&w.sup), Sees::Yes),
            ("m1", Some(&w.m1), Sees::Yes),
            ("m2", Some(&w.m2), m2),
            ("operator B", Some(&w.op_b), Sees::No),
            ("anonymous", None, Sees::Anonymous),
        ]
    };
    let mut cases = check_reads(w, &cast(Sees::No)).await;
    cases += check_hidden_writes(w, "m2", Some(&w.m2)).await;
    cases += check_hidden_writes(w, "operator B", Some(&w.op_b)).await;
    cases += check_hidden_writes(w, "anonymous", None).await;
    // The supervisor works on the department's records; they stay m1's.
    let (client, notes) = (w.vars.fill("/clients/{c}"), r#"{"notes":"checked"}"#);
    let c = w.ok(Some(&w.sup), "PATCH", &client, notes).await;
    assert_eq!(c["responsible_id"], w.m1.id, "{c}");

    // m1 shares the client, lead, Interest and dialog with department A; the contact,
    // identities, interaction, call, messages and Feeds follow.
    let shared = "/clients/{c}\n/leads/{l}\n/interests/{i}\n/dialogs/{d}";
    for row in w.vars.table(shared) {
        let v = w.ok(Some(&w.m1), "PATCH", &row[0], SHARE).await;
        assert_eq!(v["shared"], true, "{v}");
    }
    cases += check_reads(w, &cast(Sees::Yes)).await;
    cases += check_hidden_writes(w, "operator B", Some(&w.op_b)).await;
    // The colleague may now work on it too; it stays m1's.
    let c = w.ok(Some(&w.m2), "PATCH", &client, notes).await;
    assert_eq!(c["responsible_id"], w.m1.id, "{c}");
    // Unshared again, it is gone for m2.
    w.ok(Some(&w.m1), "PATCH", &client, UNSHARE).await;
    let got = w.send(Some(&w.m2), "GET", &client, "-").await;
    err(&got, NOT_FOUND, None, "m2 after unsharing");
    eprintln!("acl: {cases} record access cases on {}", backend_name());
}

#[tokio::test]
async fn api_keys_are_bound_by_their_scopes_and_revocation() {
    let mut w = world().await;
    seed(&mut w).await;
    let (w, app) = (&w, &w.app);
    let scopes = [Scope::ClientsRead, Scope::DialogsWrite];
    let limited = app.api_key(&scopes).await;
    // What its scopes allow it sees, unshared records too (`write` implies `read`).
    let allowed = "/clients/{c}\n/contacts/{k}\n/leads/{l}\n/dialogs/{d}\n/dialogs/{d}/messages";
    for row in w.vars.table(allowed) {
        w.ok(Some(&limited), "GET", &row[0], "-").await;
    }
    let seq = app.last_seq().await;
    for row in w.vars.table(SCOPED) {
        let got = w.send(Some(&limited), &row[0], &row[1], &row[3]).await;
        let ctx = format!("limited key {}", row.join(" "));
        err(&got, FORBIDDEN, None, &ctx);
        let msg = got.1["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(&row[2]), "{ctx}: {msg}");
    }
    assert_eq!(app.last_seq().await, seq, "nothing written");

    // A revoked key is refused at once, for reads and writes; so is a made-up token.
    let body = r#"{"name":"crm","scopes":["clients:write"]}"#;
    let created = w.ok(Some(&app.admin), "POST", "/api-keys", body).await;
    let token = created["secret"].as_str().expect("secret").to_owned();
    let via_api = Principal {
        id: id(&created),
        token,
    };
    let client = w.vars.fill("/clients/{c}");
    for key in [&via_api, &limited] {
        w.ok(Some(key), "GET", &client, "-").await;
        let path = format!("/api-keys/{}", key.id);
        let revoked = w.ok(Some(&app.admin), "DELETE", &path, "-").await;
        assert!(revoked["revoked_at"].is_string(), "{revoked}");
        let seq = app.last_seq().await;
        let got = w.send(Some(key), "GET", &client, "-").await;
        err(&got, UNAUTHENTICATED, None, "revoked key GET");
        let got = w.send(Some(key), "PATCH", &client, r#"{"name":"X"}"#).await;
        err(&got, UNAUTHENTICATED, None, "revoked key PATCH");
        assert_eq!(app.last_seq().await, seq);
    }
    let token = "not-a-real-token".to_owned();
    let got = w
        .send(Some(&Principal { id: 0, token }), "GET", &client, "-")
        .await;
    err(&got, UNAUTHENTICATED, None, "made-up token");
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_role() {
    let mut w = world().await;
    let spare = w.app.api_key(&[Scope::ClientsRead]).await;
    w.vars.set("spare", spare.id);
    let (w, app) = (&w, &w.app);
    let denied = [
        ("supervisor A", Some(&w.sup)),
        ("m1", Some(&w.m1)),
        ("m2", Some(&w.m2)),
        ("operator B", Some(&w.op_b)),
        ("api key", Some(&w.key)),
        ("anonymous", None),
    ];
    let (seq, rows) = (app.last_seq().await, w.vars.table(ADMIN));
    for row in &rows {
        for (who, p) in denied {
            let got = w.send(p, &row[0], &row[1], &row[2]).await;
            let ctx = format!("{who} {} {}", row[0], row[1]);
            err(&got, p.map_or(UNAUTHENTICATED, |_| FORBIDDEN), None, &ctx);
            let msg = got.1["error"]["message"].as_str().unwrap_or("");
            assert!(who != "api key" || msg.contains("admin"), "{ctx}: {msg}");
        }
    }
    assert_eq!(app.last_seq().await, seq, "nothing written by non-admins");
    for row in &rows {
        w.ok(Some(&app.admin), &row[0], &row[1], &row[2]).await;
    }
    // An API key with the admin scope is an admin too.
    let admin_key = app.api_key(&[Scope::Admin]).await;
    w.ok(Some(&admin_key), "GET", "/audit", "-").await;
    // The change log needs the admin role or the changes:read scope.
    let reader = app.api_key(&[Scope::ClientsRead]).await;
    let changes = [
        ("anonymous", None, UNAUTHENTICATED),
        ("revoked key", Some(&spare), UNAUTHENTICATED),
        ("key without changes:read", Some(&reader), FORBIDDEN),
    ];
    for (who, p, want) in denied[..4]
        .iter()
        .map(|(w, p)| (*w, *p, FORBIDDEN))
        .chain(changes)
    {
        let got = w.send(p, "GET", "/changes", "-").await;
        err(&got, want, None, who);
        let msg = got.1["error"]["message"].as_str().unwrap_or("");
        assert!(
            !who.contains("changes:read") || msg.contains("changes:read"),
            "{msg}"
        );
    }
    w.ok(Some(&w.key), "GET", "/changes", "-").await;
    w.ok(Some(&app.admin), "GET", "/changes", "-").await;
    let n = rows.len() * (denied.len() + 1) + 10;
    eprintln!("acl: {n} admin endpoint cases");
}

#[tokio::test]
async fn who_may_make_whom_responsible() {
    let mut w = world().await;
    let body = w
        .vars
        .fill(r#"{"kind":"person","name":"Own","responsible_id":{m1}}"#);
    let own = id(&w.ok(Some(&w.m1), "POST", "/clients", &body).await);
    w.vars.set("own", own);
    let (w, app) = (&w, &w.app);
    let own = format!("/clients/{own}");
    let seq = app.last_seq().await;
    let before = w.ok(Some(&app.admin), "GET", &own, "-").await;
    for row in w.vars.table(REFUSED) {
        let p = match row[0].as_str() {
            "m1" => &w.m1,
            "sup" => &w.sup,
            _ => &w.op_b,
        };
        let got = w.send(Some(p), &row[1], &row[2], &row[3]).await;
        err(&got, FORBIDDEN, None, &row.join(" "));
    }
    assert_eq!(app.last_seq().await, seq, "nothing written");
    assert_eq!(w.ok(Some(&app.admin), "GET", &own, "-").await, before);

    // A supervisor assigns within the department; the record moves to that manager.
    let to_m2 = w.vars.fill(r#"{"responsible_id":{m2}}"#);
    let c = w.ok(Some(&w.sup), "PATCH", &own, &to_m2).await;
    assert_eq!(c["responsible_id"], w.m2.id, "{c}");
    assert_eq!(c["department_id"], w.var("A"), "{c}");
    w.ok(Some(&w.m2), "GET", &own, "-").await;
    let got = w.send(Some(&w.m1), "GET", &own, "-").await;
    err(&got, NOT_FOUND, None, "m1 after the reassignment");
    let by_sup = r#"
        /clients  {"kind":"person","name":"S","responsible_id":{m1}}
        /leads    {"name":"S","responsible_id":{m2}}
        /clients  {"kind":"person","name":"S","responsible_id":{sup}}"#;
    for row in w.vars.table(by_sup) {
        let v = w.ok(Some(&w.sup), "POST", &row[0], &row[1]).await;
        assert_eq!(v["department_id"], w.var("A"), "{v}");
    }

    // Admins and API keys assign anyone; the record goes to that user's department and is
    // seen there, not in A.
    let to_b = w
        .vars
        .fill(r#"{"kind":"person","name":"B","responsible_id":{opb}}"#);
    for p in [&app.admin, &w.key] {
        let c = w.ok(Some(p), "POST", "/clients", &to_b).await;
        assert_eq!(c["department_id"], w.var("B"), "{c}");
        let path = format!("/clients/{}", id(&c));
        w.ok(Some(&w.op_b), "GET", &path, "-").await;
        for (who, other) in [("supervisor A", &w.sup), ("m1", &w.m1)] {
            let got = w.send(Some(other), "GET", &path, "-").await;
            err(&got, NOT_FOUND, None, who);
        }
    }
    // A supervisor also sees what they are responsible for outside their department; a record
    // shared with B is seen by B's operator, not by A's managers.
    let body =
        r#"{"kind":"person","name":"S","responsible_id":{sup},"department_id":{B},"shared":true}"#;
    let c = w
        .ok(Some(&app.admin), "POST", "/clients", &w.vars.fill(body))
        .await;
    let path = format!("/clients/{}", id(&c));
    for (p, status) in [(&w.sup, 200), (&w.op_b, 200), (&w.m1, 404)] {
        let got = w.send(Some(p), "GET", &path, "-").await;
        assert_eq!(got.0.as_u16(), status, "user {} GET {path}", p.id);
    }
}
