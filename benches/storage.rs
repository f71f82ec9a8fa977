//! Storage load benchmark: identity lookup, client name search and Feed pages over a million
//! rows, on SQLite and (when a server is given) PostgreSQL, through the real [`SqlStore`].
//!
//! Run with `cargo bench --bench storage`. Environment:
//! - `KOMMUTATOR_BENCH_SCALE`: row-count factor (default `1.0`: 1,000,000 clients, identities
//!   and background Feed entries); `0.01` for a quick run.
//! - `KOMMUTATOR_BENCH_DATABASE_URL`: a PostgreSQL server URL
//!   (`postgres://postgres@127.0.0.1:5432/postgres`); a fresh database `kb_<pid>` is created
//!   there and dropped at the end.
//! - `KOMMUTATOR_BENCH_ONLY`: `sqlite` or `postgres` to run one backend.
//! - `KOMMUTATOR_BENCH_KEEP=1`: keep the databases afterwards (their locations are printed),
//!   to look at query plans.
//! - `KOMMUTATOR_BENCH_ANALYZE=0`: skip `ANALYZE` after the load (the app never runs it).
//!
//! Data is bulk-loaded by raw multi-row `INSERT`s through the store's pool; search terms and
//! identity values come from the same functions the store uses, so they match what the app
//! writes. Each measurement is a warm-up then sequential queries on random keys; the table
//! and a one-line `BENCH_JSON` document are printed at the end.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{AnyConnection, Connection, Row};

use kommutator::domain::validate::{normalize_name, search_terms};
use kommutator::domain::{Actor, FeedKind, IdentityKind, IdentityRules, Role};
use kommutator::storage::{Backend, ClientQuery, Cursor, FeedQuery, FeedTarget, SqlStore, Store};

/// Rows per multi-row `INSERT`.
const ROWS_PER_STATEMENT: usize = 500;
/// Rows generated and inserted per transaction.
const ROWS_PER_TX: usize = 50_000;
/// Departments and managers (fixed, whatever the scale).
const DEPARTMENTS: i64 = 20;
const MANAGERS: i64 = 200;
/// The admin user id; managers are `2..=MANAGERS + 1`, manager `m` in department
/// `1 + m % DEPARTMENTS`.
const ADMIN_ID: i64 = 1;
/// The manager the benchmark acts as (id 2, department 1).
const BENCH_MANAGER: i64 = 2;
const BENCH_DEPARTMENT: i64 = 1;
/// Clients `1..=HEAVY_CLIENTS` have `HEAVY_FEED` Feed entries each (and belong to the bench
/// manager).
const HEAVY_CLIENTS: i64 = 5;
const HEAVY_FEED: i64 = 10_000;
const FEED_PAGE: i64 = 50;
/// 2023-11-14, in microseconds.
const EPOCH: i64 = 1_700_000_000_000_000;
const YEAR_MICROS: i64 = 365 * 24 * 3600 * 1_000_000;

const N_LOOKUP: usize = 2000;
const N_PAGE: usize = 500;

// ---------------------------------------------------------------------------------------
// Name generation

const RU_ADJ: &[&str] = &[
    "Северный",
    "Южный",
    "Западный",
    "Восточный",
    "Центральный",
    "Новый",
    "Первый",
    "Главный",
    "Большой",
    "Русский",
    "Сибирский",
    "Уральский",
    "Волжский",
    "Балтийский",
    "Московский",
    "Невский",
    "Золотой",
    "Зелёный",
    "Белый",
    "Красный",
    "Региональный",
    "Федеральный",
    "Городской",
    "Народный",
    "Современный",
];
const RU_NOUN: &[&str] = &[
    "Ромашка",
    "Вектор",
    "Альянс",
    "Гарант",
    "Капитал",
    "Мастер",
    "Проект",
    "Стиль",
    "Эксперт",
    "Торг",
    "Снаб",
    "Сервис",
    "Строй",
    "Трейд",
    "Инвест",
    "Логистика",
    "Технологии",
    "Системы",
    "Решения",
    "Ресурс",
    "Партнёр",
    "Консалт",
    "Медиа",
    "Агро",
    "Энерго",
    "Металл",
    "Дом",
    "Групп",
    "Холдинг",
    "Фарм",
    "Транс",
    "Лес",
    "Пром",
    "Комплекс",
    "Маркет",
    "Оптима",
    "Импульс",
    "Меридиан",
    "Горизонт",
    "Орбита",
];
const RU_SYLLABLES: &[&str] = &[
    "ка", "ро", "ми", "ла", "те", "ва", "зо", "ни", "ре", "са", "то", "ли", "на", "ве", "до", "мо",
    "ра", "ги", "бе", "ку", "ст", "кс", "ар", "ин", "ол", "ен", "ус", "ам", "ир", "он", "ёл", "юр",
    "ял", "эк", "фа", "це", "ша", "жу", "хо", "пи",
];
const EN_SYLLABLES: &[&str] = &[
    "ka", "ro", "mi", "la", "te", "va", "zo", "ni", "re", "sa", "to", "li", "na", "ve", "do", "mo",
    "ra", "gi", "be", "ku", "st", "ks", "ar", "in", "ol", "en", "us", "am", "ir", "on", "el", "ur",
    "yl", "ex", "fa", "ce", "sh", "ju", "ho", "pi",
];
const RU_SURNAME: &[&str] = &[
    "Иванов",
    "Петров",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
    "Орлов",
    "Андреев",
    "Макаров",
    "Никитин",
    "Захаров",
    "Зайцев",
    "Соловьёв",
    "Борисов",
    "Яковлев",
    "Григорьев",
];
const RU_FIRST: &[&str] = &[
    "Александр",
    "Сергей",
    "Андрей",
    "Дмитрий",
    "Алексей",
    "Максим",
    "Иван",
    "Михаил",
    "Ольга",
    "Елена",
    "Наталья",
    "Татьяна",
    "Анна",
    "Мария",
    "Ирина",
    "Светлана",
];
const RU_PATRONYMIC: &[&str] = &[
    "Петрович",
    "Сергеевич",
    "Иванович",
    "Александрович",
    "Андреевич",
    "Викторович",
    "Николаевна",
    "Петровна",
    "Сергеевна",
    "Ивановна",
];
const EN_ADJ: &[&str] = &[
    "Northern", "Global", "Prime", "Blue", "Silver", "Golden", "United", "Pacific", "Atlantic",
    "Bright", "Smart", "First", "Royal", "Green", "Rapid",
];
const EN_NOUN: &[&str] = &[
    "Trading",
    "Systems",
    "Solutions",
    "Logistics",
    "Holdings",
    "Ventures",
    "Partners",
    "Industries",
    "Labs",
    "Works",
    "Capital",
    "Digital",
    "Foods",
    "Energy",
    "Media",
    "Consulting",
];
const EN_FIRST: &[&str] = &[
    "John", "Emma", "Michael", "Olivia", "David", "Sophia", "James", "Mia", "Robert", "Laura",
];
const EN_LAST: &[&str] = &[
    "Smith", "Johnson", "Brown", "Taylor", "Miller", "Wilson", "Moore", "Clark", "Lewis", "Walker",
];
const TRANSLIT_FIRST: &[&str] = &[
    "ivan", "sergey", "olga", "elena", "anna", "maria", "dmitry", "alexey", "irina", "pavel",
];
const TRANSLIT_LAST: &[&str] = &[
    "ivanov",
    "petrov",
    "smirnova",
    "kuznetsov",
    "popova",
    "volkov",
    "orlova",
    "sokolov",
];
const MAIL_DOMAINS: &[&str] = &[
    "mail.ru",
    "yandex.ru",
    "gmail.com",
    "bk.ru",
    "inbox.ru",
    "romashka.ru",
    "trade-group.com",
];

/// Prefixes matching a dictionary word: a few percent of clients each.
const MEDIUM_PREFIXES: &[&str] = &[
    "Ром",
    "вект",
    "Гаран",
    "серв",
    "Строй",
    "капит",
    "Иванов",
    "trad",
    "Glob",
    "смир",
];
/// A legal form: in ~40% of names.
const COMMON_PREFIXES: &[&str] = &["ООО"];

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list.choose(rng).copied().unwrap_or("")
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A made-up word of 2-3 syllables: the long tail of rare terms.
fn made_up(rng: &mut StdRng, syllables: &[&str]) -> String {
    let n = rng.gen_range(2..=3);
    let w: String = (0..n).map(|_| pick(rng, syllables)).collect();
    capitalized(&w)
}

/// A client: kind, name, and the made-up word in it, if any.
fn client_name(rng: &mut StdRng) -> (&'static str, String, Option<String>) {
    let roll = rng.gen_range(0..100);
    match roll {
        // Russian company: 55% (ООО about 40% of all names).
        0..=54 => {
            let form = match rng.gen_range(0..55) {
                0..=39 => "ООО",
                40..=46 => "АО",
                47..=52 => "ЗАО",
                _ => "ПАО",
            };
            let rare = rng.gen_bool(0.5).then(|| made_up(rng, RU_SYLLABLES));
            let body = match (rng.gen_range(0..4), &rare) {
                (0, Some(r)) => format!("{r} {}", pick(rng, RU_NOUN)),
                (1, Some(r)) => r.clone(),
                (_, Some(r)) => format!("{} {} {r}", pick(rng, RU_ADJ), pick(rng, RU_NOUN)),
                (0, None) => pick(rng, RU_NOUN).to_owned(),
                (1, None) => format!("{}-{}", pick(rng, RU_NOUN), pick(rng, RU_NOUN)),
                (_, None) => format!("{} {}", pick(rng, RU_ADJ), pick(rng, RU_NOUN)),
            };
            ("company", format!("{form} «{body}»"), rare)
        }
        // Sole trader: 12%.
        55..=66 => (
            "company",
            format!(
                "ИП {} {} {}",
                pick(rng, RU_SURNAME),
                pick(rng, RU_FIRST),
                pick(rng, RU_PATRONYMIC)
            ),
            None,
        ),
        // English company: 10%.
        67..=76 => {
            let form = pick(rng, &["LLC", "LLC", "Ltd", "Inc"]);
            let rare = rng.gen_bool(0.5).then(|| made_up(rng, EN_SYLLABLES));
            let name = match &rare {
                Some(r) => format!("{r} {} {form}", pick(rng, EN_NOUN)),
                None => format!("{} {} {form}", pick(rng, EN_ADJ), pick(rng, EN_NOUN)),
            };
            ("company", name, rare)
        }
        // Private persons: 23%.
        77..=94 => (
            "person",
            format!("{} {}", pick(rng, RU_SURNAME), pick(rng, RU_FIRST)),
            None,
        ),
        _ => (
            "person",
            format!("{} {}", pick(rng, EN_FIRST), pick(rng, EN_LAST)),
            None,
        ),
    }
}

/// Manager `m` (0-based): user id and department.
fn manager(m: i64) -> (i64, i64) {
    (2 + m, 1 + m % DEPARTMENTS)
}

/// The 7 digits after +7916 of phone number `i` (a permutation: all distinct).
fn phone_of(i: i64) -> String {
    let d = (i * 7_654_321 + 1_234_567).rem_euclid(10_000_000);
    format!("+7916{d:07}")
}

/// The way a person would type a stored phone.
fn typed_phone(e164: &str, variant: usize) -> String {
    let d = &e164[2..]; // 916xxxxxxx
    match variant % 3 {
        0 => format!("8 ({}) {}-{}-{}", &d[0..3], &d[3..6], &d[6..8], &d[8..10]),
        1 => format!("+7 {} {} {} {}", &d[0..3], &d[3..6], &d[6..8], &d[8..10]),
        _ => format!("7{d}"),
    }
}

// ---------------------------------------------------------------------------------------
// Bulk loading

#[derive(Debug, Clone)]
enum V {
    I(i64),
    T(String),
    NullI,
    NullT,
}

fn opt_i(v: Option<i64>) -> V {
    v.map_or(V::NullI, V::I)
}

fn insert_sql(table: &str, cols: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols.len() {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            sql.push_str(&format!("${n}"));
        }
        sql.push(')');
    }
    sql
}

/// Inserts rows (flattened, `cols.len()` values each) with multi-row statements, inside the
/// caller's transaction.
async fn insert_rows(
    conn: &mut AnyConnection,
    table: &str,
    cols: &[&str],
    vals: &[V],
) -> Result<u64> {
    let w = cols.len();
    debug_assert_eq!(vals.len() % w, 0);
    let full = insert_sql(table, cols, ROWS_PER_STATEMENT);
    let mut count = 0u64;
    for chunk in vals.chunks(ROWS_PER_STATEMENT * w) {
        let n = chunk.len() / w;
        let partial;
        let sql = if n == ROWS_PER_STATEMENT {
            &full
        } else {
            partial = insert_sql(table, cols, n);
            &partial
        };
        let mut q = sqlx::query(sql);
        for v in chunk {
            q = match v {
                V::I(i) => q.bind(*i),
                V::T(s) => q.bind(s.as_str()),
                V::NullI => q.bind(None::<i64>),
                V::NullT => q.bind(None::<String>),
            };
        }
        count += q
            .execute(&mut *conn)
            .await
            .with_context(|| format!("insert into {table}"))?
            .rows_affected();
    }
    Ok(count)
}

async fn begin(conn: &mut AnyConnection) -> Result<()> {
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    Ok(())
}

async fn commit(conn: &mut AnyConnection) -> Result<()> {
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
    Ok(())
}

/// What the load produced that the queries need.
#[derive(Debug, Default)]
struct Dataset {
    clients: i64,
    terms: u64,
    leads: i64,
    identities: i64,
    feed: i64,
    /// Stored phone / email values, by identity.
    phones: Vec<String>,
    emails: Vec<String>,
    /// Made-up words in names (the rare search keys).
    rare_words: Vec<String>,
    load_secs: f64,
    analyze_secs: f64,
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    clients: i64,
    identities: i64,
    feed_background: i64,
}

impl Sizes {
    fn new(scale: f64) -> Self {
        let n = |base: f64| ((base * scale).round() as i64).max(1000);
        Self {
            clients: n(1_000_000.0).max(HEAVY_CLIENTS + 1),
            identities: n(1_000_000.0),
            feed_background: n(1_000_000.0),
        }
    }
}

const CLIENT_COLS: &[&str] = &[
    "id",
    "kind",
    "name",
    "name_norm",
    "notes",
    "custom_fields",
    "responsible_id",
    "department_id",
    "shared",
    "created_at",
    "updated_at",
];
const TERM_COLS: &[&str] = &[
    "term",
    "client_id",
    "responsible_id",
    "department_id",
    "shared",
];
const LEAD_COLS: &[&str] = &[
    "id",
    "name",
    "phone",
    "email",
    "source",
    "status",
    "responsible_id",
    "department_id",
    "shared",
    "created_at",
    "updated_at",
];
const IDENTITY_COLS: &[&str] = &[
    "id",
    "kind",
    "value",
    "client_id",
    "contact_id",
    "lead_id",
    "created_at",
];
const FEED_COLS: &[&str] = &[
    "id",
    "kind",
    "ref_type",
    "ref_id",
    "client_id",
    "contact_id",
    "lead_id",
    "interest_id",
    "occurred_at",
    "title",
    "preview",
];

const FEED_TITLES: &[(&str, &str, &str)] = &[
    ("call", "call", "Входящий звонок"),
    ("call", "call", "Исходящий звонок"),
    ("message", "message", "Сообщение в Telegram"),
    ("message", "message", "Сообщение WhatsApp"),
    ("email", "interaction", "Письмо: коммерческое предложение"),
    ("note", "interaction", "Заметка"),
    ("task", "interaction", "Задача: перезвонить клиенту"),
    ("meeting", "interaction", "Встреча в офисе"),
    (
        "interest",
        "interest",
        "Новый Интерес: поставка оборудования",
    ),
];
const PREVIEWS: &[&str] = &[
    "Добрый день! Направляем вам коммерческое предложение по поставке, просим рассмотреть до пятницы.",
    "Клиент просил перезвонить после обеда, интересуется сроками доставки и скидкой на объём.",
    "Hello, could you send the updated invoice and the delivery schedule for next month?",
    "Согласовали спецификацию, ждём подписанный договор и предоплату 30%.",
];

async fn load(store: &SqlStore, sizes: Sizes, rng: &mut StdRng) -> Result<Dataset> {
    let backend = store.backend();
    let started = Instant::now();
    let mut conn = store.pool().acquire().await?;
    let conn: &mut AnyConnection = &mut conn;
    match backend {
        Backend::Sqlite => {
            // Load-only settings on this connection; the store is reopened for measuring.
            sqlx::raw_sql(
                "PRAGMA foreign_keys = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -524288;",
            )
            .execute(&mut *conn)
            .await?;
        }
        Backend::Postgres => {
            sqlx::raw_sql("SET synchronous_commit = off")
                .execute(&mut *conn)
                .await?;
        }
    }
    let mut ds = Dataset::default();

    // Departments and users.
    begin(conn).await?;
    let mut vals = Vec::new();
    for d in 1..=DEPARTMENTS {
        vals.extend([V::I(d), V::T(format!("Отдел продаж {d}")), V::I(EPOCH)]);
    }
    insert_rows(conn, "departments", &["id", "name", "created_at"], &vals).await?;
    let user_cols = &[
        "id",
        "login",
        "name",
        "role",
        "department_id",
        "active",
        "must_change_password",
        "created_at",
        "updated_at",
    ];
    let mut vals = vec![
        V::I(ADMIN_ID),
        V::T("admin".into()),
        V::T("Administrator".into()),
        V::T("admin".into()),
        V::NullI,
        V::I(1),
        V::I(0),
        V::I(EPOCH),
        V::I(EPOCH),
    ];
    for m in 0..MANAGERS {
        let (id, dept) = manager(m);
        vals.extend([
            V::I(id),
            V::T(format!("manager{m}")),
            V::T(format!("{} {}", pick(rng, RU_FIRST), pick(rng, RU_SURNAME))),
            V::T("manager".into()),
            V::I(dept),
            V::I(1),
            V::I(0),
            V::I(EPOCH),
            V::I(EPOCH),
        ]);
    }
    insert_rows(conn, "users", user_cols, &vals).await?;
    commit(conn).await?;

    // Clients with their search terms.
    let t = Instant::now();
    let mut id = 1i64;
    while id <= sizes.clients {
        let end = (id + ROWS_PER_TX as i64 - 1).min(sizes.clients);
        let mut cvals = Vec::with_capacity((end - id + 1) as usize * CLIENT_COLS.len());
        let mut tvals = Vec::new();
        for cid in id..=end {
            let (kind, name, rare) = client_name(rng);
            let (resp, dept) = if cid <= HEAVY_CLIENTS {
                (BENCH_MANAGER, BENCH_DEPARTMENT)
            } else {
                manager(rng.gen_range(0..MANAGERS))
            };
            let shared = i64::from(rng.gen_bool(0.2));
            let created = EPOCH + rng.gen_range(0..3 * YEAR_MICROS);
            for term in search_terms(&name) {
                tvals.extend([V::T(term), V::I(cid), V::I(resp), V::I(dept), V::I(shared)]);
            }
            if let Some(r) = rare {
                if ds.rare_words.len() < 5000 && rng.gen_bool(0.02) {
                    ds.rare_words.push(r);
                }
            }
            let norm = normalize_name(&name);
            cvals.extend([
                V::I(cid),
                V::T(kind.into()),
                V::T(name),
                V::T(norm),
                V::NullT,
                V::T("{}".into()),
                V::I(resp),
                V::I(dept),
                V::I(shared),
                V::I(created),
                V::I(created),
            ]);
        }
        begin(conn).await?;
        insert_rows(conn, "clients", CLIENT_COLS, &cvals).await?;
        ds.terms += insert_rows(conn, "client_search_terms", TERM_COLS, &tvals).await?;
        commit(conn).await?;
        id = end + 1;
    }
    ds.clients = sizes.clients;
    println!(
        "  clients: {} (+{} search terms) in {:.1}s",
        ds.clients,
        ds.terms,
        t.elapsed().as_secs_f64()
    );

    // Leads (one in ten identities belongs to a lead) and identities.
    let t = Instant::now();
    let rules = IdentityRules::default();
    let n_leads = sizes.identities / 10;
    let mut next_lead = 1i64;
    let mut iid = 1i64;
    while iid <= sizes.identities {
        let end = (iid + ROWS_PER_TX as i64 - 1).min(sizes.identities);
        let mut lvals = Vec::new();
        let mut ivals = Vec::with_capacity((end - iid + 1) as usize * IDENTITY_COLS.len());
        for i in iid..=end {
            let phone = i % 10 < 6;
            let value = if phone {
                let v = phone_of(i);
                if i % 64 == 1 {
                    // The generated form must be what the store stores.
                    let n = rules
                        .normalize("value", IdentityKind::Phone, &typed_phone(&v, 0))
                        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
                    anyhow::ensure!(n == v, "phone {v} normalizes to {n}");
                }
                ds.phones.push(v.clone());
                v
            } else {
                let raw = format!(
                    "{}.{}{}@{}",
                    capitalized(pick(rng, TRANSLIT_FIRST)),
                    pick(rng, TRANSLIT_LAST),
                    i,
                    pick(rng, MAIL_DOMAINS)
                );
                let v = rules
                    .normalize("value", IdentityKind::Email, &raw)
                    .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
                ds.emails.push(v.clone());
                v
            };
            let created = EPOCH + rng.gen_range(0..3 * YEAR_MICROS);
            let (client, lead) = if i % 10 == 9 && next_lead <= n_leads {
                let lid = next_lead;
                next_lead += 1;
                let (resp, dept) = manager(rng.gen_range(0..MANAGERS));
                let (lphone, lemail) = if phone {
                    (V::T(value.clone()), V::NullT)
                } else {
                    (V::NullT, V::T(value.clone()))
                };
                lvals.extend([
                    V::I(lid),
                    V::T(format!("{} {}", pick(rng, RU_FIRST), pick(rng, RU_SURNAME))),
                    lphone,
                    lemail,
                    V::T("website".into()),
                    V::T("open".into()),
                    V::I(resp),
                    V::I(dept),
                    V::I(1),
                    V::I(created),
                    V::I(created),
                ]);
                (None, Some(lid))
            } else {
                (Some(rng.gen_range(1..=sizes.clients)), None)
            };
            let kind = if phone { "phone" } else { "email" };
            ivals.extend([
                V::I(i),
                V::T(kind.into()),
                V::T(value),
                opt_i(client),
                V::NullI,
                opt_i(lead),
                V::I(created),
            ]);
        }
        begin(conn).await?;
        insert_rows(conn, "leads", LEAD_COLS, &lvals).await?;
        insert_rows(conn, "identities", IDENTITY_COLS, &ivals).await?;
        commit(conn).await?;
        iid = end + 1;
    }
    ds.leads = next_lead - 1;
    ds.identities = sizes.identities;
    println!(
        "  identities: {} ({} phones, {} emails; {} leads) in {:.1}s",
        ds.identities,
        ds.phones.len(),
        ds.emails.len(),
        ds.leads,
        t.elapsed().as_secs_f64()
    );

    // Feed: HEAVY_FEED entries for each heavy client, then background entries spread over
    // all clients.
    let t = Instant::now();
    let total_feed = HEAVY_CLIENTS * HEAVY_FEED + sizes.feed_background;
    let mut fid = 1i64;
    while fid <= total_feed {
        let end = (fid + ROWS_PER_TX as i64 - 1).min(total_feed);
        let mut fvals = Vec::with_capacity((end - fid + 1) as usize * FEED_COLS.len());
        for f in fid..=end {
            let (client, occurred) = if f <= HEAVY_CLIENTS * HEAVY_FEED {
                // One client after another, about one item an hour, oldest first.
                let c = 1 + (f - 1) / HEAVY_FEED;
                let k = (f - 1) % HEAVY_FEED;
                (c, EPOCH + k * 3_600_000_000 + rng.gen_range(0..60_000_000))
            } else {
                (
                    rng.gen_range(1..=sizes.clients),
                    EPOCH + rng.gen_range(0..3 * YEAR_MICROS),
                )
            };
            let (kind, ref_type, title) =
                FEED_TITLES.choose(rng).copied().unwrap_or(FEED_TITLES[0]);
            fvals.extend([
                V::I(f),
                V::T(kind.into()),
                V::T(ref_type.into()),
                V::I(f),
                V::I(client),
                V::NullI,
                V::NullI,
                V::NullI,
                V::I(occurred),
                V::T(title.into()),
                V::T(pick(rng, PREVIEWS).into()),
            ]);
        }
        begin(conn).await?;
        insert_rows(conn, "feed_entries", FEED_COLS, &fvals).await?;
        commit(conn).await?;
        fid = end + 1;
    }
    ds.feed = total_feed;
    println!(
        "  feed entries: {} ({} clients x {}) in {:.1}s",
        ds.feed,
        HEAVY_CLIENTS,
        HEAVY_FEED,
        t.elapsed().as_secs_f64()
    );

    match backend {
        Backend::Sqlite => {
            sqlx::raw_sql("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                .execute(&mut *conn)
                .await?;
        }
        Backend::Postgres => {
            // Identity columns continue after the loaded ids.
            for table in [
                "departments",
                "users",
                "clients",
                "leads",
                "identities",
                "feed_entries",
            ] {
                sqlx::raw_sql(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
                ))
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    ds.load_secs = started.elapsed().as_secs_f64();

    let t = Instant::now();
    if std::env::var("KOMMUTATOR_BENCH_ANALYZE").as_deref() != Ok("0") {
        match backend {
            Backend::Sqlite => {
                sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
                    .execute(&mut *conn)
                    .await?;
            }
            Backend::Postgres => {
                // Bulk-loaded tables also need the visibility map autovacuum would set.
                sqlx::raw_sql("VACUUM (ANALYZE)")
                    .execute(&mut *conn)
                    .await?;
            }
        }
    } else if backend == Backend::Sqlite {
        sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
    }
    ds.analyze_secs = t.elapsed().as_secs_f64();
    Ok(ds)
}

// ---------------------------------------------------------------------------------------
// Measuring

#[derive(Debug, Clone)]
struct Stat {
    op: String,
    backend: &'static str,
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    ops: f64,
    /// Mean items returned per query (1.0 = every lookup found its row).
    found: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx].as_secs_f64() * 1e6
}

/// Runs `f` on `warmup` then `keys.len()` keys, sequentially; `f` returns how many items it
/// got.
async fn measure<K, F, Fut>(
    op: &str,
    backend: &'static str,
    warmup: Vec<K>,
    keys: Vec<K>,
    mut f: F,
) -> Result<Stat>
where
    F: FnMut(K) -> Fut,
    Fut: Future<Output = Result<usize>>,
{
    for k in warmup {
        f(k).await?;
    }
    let n = keys.len();
    let mut lat = Vec::with_capacity(n);
    let mut items = 0usize;
    let all = Instant::now();
    for k in keys {
        let t = Instant::now();
        items += f(k).await.with_context(|| op.to_owned())?;
        lat.push(t.elapsed());
    }
    let total = all.elapsed().as_secs_f64();
    lat.sort_unstable();
    let s = Stat {
        op: op.to_owned(),
        backend,
        n,
        p50: percentile(&lat, 0.50),
        p90: percentile(&lat, 0.90),
        p99: percentile(&lat, 0.99),
        max: percentile(&lat, 1.0),
        ops: n as f64 / total,
        found: items as f64 / n.max(1) as f64,
    };
    print_row(&s);
    Ok(s)
}

fn print_header() {
    println!(
        "{:<40} {:<8} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "operation", "backend", "n", "p50 us", "p90 us", "p99 us", "max us", "ops/s", "found"
    );
}

fn print_row(s: &Stat) {
    println!(
        "{:<40} {:<8} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.0} {:>8.2}",
        s.op, s.backend, s.n, s.p50, s.p90, s.p99, s.max, s.ops, s.found
    );
}

fn sample<T: Clone>(rng: &mut StdRng, from: &[T], n: usize) -> Vec<T> {
    (0..n).filter_map(|_| from.choose(rng).cloned()).collect()
}

fn manager_actor() -> Actor {
    Actor::User {
        id: BENCH_MANAGER,
        role: Role::Manager,
        department_id: Some(BENCH_DEPARTMENT),
    }
}

fn admin_actor() -> Actor {
    Actor::User {
        id: ADMIN_ID,
        role: Role::Admin,
        department_id: None,
    }
}

async fn run_queries(
    store: &SqlStore,
    ds: &Dataset,
    backend: &'static str,
    rng: &mut StdRng,
) -> Result<Vec<Stat>> {
    let mut out = Vec::new();
    let warm_lookup = N_LOOKUP / 5;
    let warm_page = N_PAGE / 5;

    // (a) identity lookups.
    let typed_phones = |rng: &mut StdRng, n: usize| -> Vec<String> {
        sample(rng, &ds.phones, n)
            .iter()
            .enumerate()
            .map(|(i, p)| typed_phone(p, i))
            .collect()
    };
    let typed_emails = |rng: &mut StdRng, n: usize| -> Vec<String> {
        sample(rng, &ds.emails, n)
            .iter()
            .map(|e| capitalized(e))
            .collect()
    };
    let lookups: [(&str, Actor, IdentityKind); 4] = [
        ("identity.phone system", Actor::System, IdentityKind::Phone),
        ("identity.email system", Actor::System, IdentityKind::Email),
        (
            "identity.phone manager",
            manager_actor(),
            IdentityKind::Phone,
        ),
        (
            "identity.email manager",
            manager_actor(),
            IdentityKind::Email,
        ),
    ];
    for (op, actor, kind) in lookups {
        let (w, k) = match kind {
            IdentityKind::Phone => (typed_phones(rng, warm_lookup), typed_phones(rng, N_LOOKUP)),
            _ => (typed_emails(rng, warm_lookup), typed_emails(rng, N_LOOKUP)),
        };
        let actor = &actor;
        out.push(
            measure(op, backend, w, k, |v: String| async move {
                Ok(store.find_identity(actor, kind, &v).await?.map_or(0, |_| 1))
            })
            .await?,
        );
    }
    // A number nobody has (+7925...): the inbound-call path for a new caller.
    let missing = |rng: &mut StdRng, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| typed_phone(&format!("+7925{:07}", rng.gen_range(0..10_000_000)), i))
            .collect()
    };
    let (w, k) = (missing(rng, warm_lookup), missing(rng, N_LOOKUP));
    out.push(
        measure(
            "identity.phone system miss",
            backend,
            w,
            k,
            |v: String| async move {
                Ok(store
                    .find_identity(&Actor::System, IdentityKind::Phone, &v)
                    .await?
                    .map_or(0, |_| 1))
            },
        )
        .await?,
    );
    // Peer: the same lookup as one raw SQL query with an already normalized value.
    let (w, k) = (
        sample(rng, &ds.phones, warm_lookup),
        sample(rng, &ds.phones, N_LOOKUP),
    );
    out.push(
        measure(
            "identity.phone raw SQL (peer)",
            backend,
            w,
            k,
            |v: String| async move {
                let row = sqlx::query(
                "SELECT i.id, i.kind, i.value, i.client_id, i.contact_id, i.lead_id, i.created_at \
                 FROM identities i WHERE i.kind = $1 AND i.value = $2",
            )
            .bind("phone")
            .bind(v)
            .fetch_optional(store.pool())
            .await?;
                Ok(row.map_or(0, |r| usize::from(r.try_get::<i64, _>("id").is_ok())))
            },
        )
        .await?,
    );

    // (b) client search by name prefix.
    let classes: [(&str, Vec<String>); 3] = [
        ("rare", ds.rare_words.clone()),
        (
            "medium",
            MEDIUM_PREFIXES.iter().map(|s| (*s).to_owned()).collect(),
        ),
        (
            "common",
            COMMON_PREFIXES.iter().map(|s| (*s).to_owned()).collect(),
        ),
    ];
    for (class, prefixes) in &classes {
        for (who, actor) in [("admin", admin_actor()), ("manager", manager_actor())] {
            let op = format!("search.{class} {who}");
            let (w, k) = (
                sample(rng, prefixes, warm_page),
                sample(rng, prefixes, N_PAGE),
            );
            let actor = &actor;
            out.push(
                measure(&op, backend, w, k, |q: String| async move {
                    let page = store
                        .search_clients(
                            actor,
                            &ClientQuery {
                                q: Some(q),
                                limit: 50,
                                ..ClientQuery::default()
                            },
                        )
                        .await?;
                    Ok(page.items.len())
                })
                .await?,
            );
        }
    }

    // (c) Feed pages of a client with HEAVY_FEED items: the first, and a deep one.
    let mut positions: Vec<(i64, Vec<(i64, i64)>)> = Vec::new();
    for c in 1..=HEAVY_CLIENTS {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT occurred_at, id FROM feed_entries WHERE client_id = $1 ORDER BY occurred_at DESC, id DESC",
        )
        .bind(c)
        .fetch_all(store.pool())
        .await?;
        positions.push((c, rows));
    }
    let first_keys = |rng: &mut StdRng, n: usize| -> Vec<(i64, Option<Cursor>)> {
        (0..n)
            .map(|_| (rng.gen_range(1..=HEAVY_CLIENTS), None))
            .collect()
    };
    let deep_keys = |rng: &mut StdRng, n: usize| -> Vec<(i64, Option<Cursor>)> {
        (0..n)
            .filter_map(|_| {
                let (c, rows) = positions.choose(rng)?;
                let lo = rows.len() / 2;
                let hi = rows
                    .len()
                    .saturating_sub(FEED_PAGE as usize + 1)
                    .max(lo + 1);
                let (at, id) = rows.get(rng.gen_range(lo..hi))?;
                Some((*c, Some(Cursor::int(*at, *id))))
            })
            .collect()
    };
    type KeyFn<'a> = &'a dyn Fn(&mut StdRng, usize) -> Vec<(i64, Option<Cursor>)>;
    let feeds: [(&str, Actor, KeyFn<'_>); 4] = [
        ("feed.first page admin", admin_actor(), &first_keys),
        ("feed.deep page admin", admin_actor(), &deep_keys),
        ("feed.first page manager", manager_actor(), &first_keys),
        ("feed.deep page manager", manager_actor(), &deep_keys),
    ];
    for (op, actor, keys) in feeds {
        let (w, k) = (keys(rng, warm_page), keys(rng, N_PAGE));
        let actor = &actor;
        out.push(
            measure(
                op,
                backend,
                w,
                k,
                |(c, cursor): (i64, Option<Cursor>)| async move {
                    let page = store
                        .feed(
                            actor,
                            &FeedQuery {
                                target: FeedTarget::Client(c),
                                kinds: Vec::<FeedKind>::new(),
                                limit: FEED_PAGE,
                                cursor,
                            },
                        )
                        .await?;
                    Ok(page.items.len())
                },
            )
            .await?,
        );
    }
    Ok(out)
}

/// Match counts of the search prefixes (not timed), to read the search rows by.
async fn term_counts(store: &SqlStore, ds: &Dataset) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    let mut rare_total = 0i64;
    let rare: Vec<&String> = ds.rare_words.iter().take(50).collect();
    for w in &rare {
        rare_total += count_prefix(store, w).await?;
    }
    out.insert(
        "rare_mean".into(),
        json!(rare_total as f64 / rare.len().max(1) as f64),
    );
    for p in MEDIUM_PREFIXES.iter().chain(COMMON_PREFIXES) {
        out.insert((*p).to_owned(), json!(count_prefix(store, p).await?));
    }
    Ok(serde_json::Value::Object(out))
}

async fn count_prefix(store: &SqlStore, prefix: &str) -> Result<i64> {
    let p = normalize_name(prefix);
    let upper = kommutator::domain::validate::prefix_upper_bound(&p)
        .unwrap_or_else(|| format!("{p}\u{10FFFF}"));
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT client_id) FROM client_search_terms WHERE term >= $1 AND term < $2",
    )
    .bind(p)
    .bind(upper)
    .fetch_one(store.pool())
    .await?;
    Ok(n)
}

/// Loads and measures one backend at `url`.
async fn run_backend(
    url: &str,
    backend: &'static str,
    sizes: Sizes,
    seed: u64,
) -> Result<(Vec<Stat>, serde_json::Value)> {
    let mut rng = StdRng::seed_from_u64(seed);
    println!("[{backend}] loading {sizes:?}");
    let loader = SqlStore::open(url, IdentityRules::default()).await?;
    let ds = load(&loader, sizes, &mut rng).await?;
    loader.close().await;
    println!(
        "[{backend}] load {:.1}s, analyze {:.1}s; rare words sampled: {}",
        ds.load_secs,
        ds.analyze_secs,
        ds.rare_words.len()
    );
    // Measure on a freshly opened store: default connection settings, as the app runs.
    let store = SqlStore::open(url, IdentityRules::default()).await?;
    let counts = term_counts(&store, &ds).await?;
    println!("[{backend}] clients matching the search prefixes: {counts}");
    print_header();
    let stats = run_queries(&store, &ds, backend, &mut rng).await?;
    store.close().await;
    let info = json!({
        "clients": ds.clients,
        "search_terms": ds.terms,
        "leads": ds.leads,
        "identities": ds.identities,
        "feed_entries": ds.feed,
        "load_secs": ds.load_secs,
        "analyze_secs": ds.analyze_secs,
        "prefix_matches": counts,
    });
    Ok((stats, info))
}

/// Normalization alone (no I/O), the CPU part of every lookup.
fn normalize_only(rng: &mut StdRng) -> Vec<Stat> {
    let rules = IdentityRules::default();
    let mut out = Vec::new();
    for (op, kind) in [
        ("normalize.phone (cpu only)", IdentityKind::Phone),
        ("normalize.email (cpu only)", IdentityKind::Email),
    ] {
        let keys: Vec<String> = (0..N_LOOKUP)
            .map(|i| match kind {
                IdentityKind::Phone => typed_phone(&phone_of(rng.gen_range(0..1_000_000)), i),
                _ => format!("Ivan.Petrov{}@Mail.ru", rng.gen_range(0..1_000_000)),
            })
            .collect();
        for k in keys.iter().take(200) {
            let _ = std::hint::black_box(rules.normalize("value", kind, k));
        }
        let mut lat = Vec::with_capacity(keys.len());
        let mut ok = 0usize;
        let all = Instant::now();
        for k in &keys {
            let t = Instant::now();
            ok += usize::from(std::hint::black_box(rules.normalize("value", kind, k)).is_ok());
            lat.push(t.elapsed());
        }
        let total = all.elapsed().as_secs_f64();
        lat.sort_unstable();
        let s = Stat {
            op: op.to_owned(),
            backend: "cpu",
            n: keys.len(),
            p50: percentile(&lat, 0.5),
            p90: percentile(&lat, 0.9),
            p99: percentile(&lat, 0.99),
            max: percentile(&lat, 1.0),
            ops: keys.len() as f64 / total,
            found: ok as f64 / keys.len() as f64,
        };
        print_row(&s);
        out.push(s);
    }
    out
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    match base[host_start..].find('/') {
        Some(i) => format!("{}/{db}{query}", &base[..host_start + i]),
        None => format!("{base}/{db}{query}"),
    }
}

async fn run_postgres(
    server: &str,
    sizes: Sizes,
    keep: bool,
) -> Result<(Vec<Stat>, serde_json::Value)> {
    sqlx::any::install_default_drivers();
    let db = format!("kb_{}", std::process::id());
    let mut admin = AnyConnection::connect(server)
        .await
        .context("connect to KOMMUTATOR_BENCH_DATABASE_URL")?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(&mut admin)
        .await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    let url = with_database(server, &db);
    let result = run_backend(&url, "postgres", sizes, 42).await;
    if keep {
        println!("[postgres] kept database {url}");
    } else {
        let dropped = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
        if let Err(e) = dropped {
            eprintln!("[postgres] could not drop {db}: {e}");
        }
    }
    admin.close().await?;
    result
}

async fn run_sqlite(sizes: Sizes, keep: bool) -> Result<(Vec<Stat>, serde_json::Value)> {
    let path = std::env::temp_dir().join(format!("kommutator-bench-{}.db", std::process::id()));
    let remove = |p: &std::path::Path| {
        for suffix in ["", "-wal", "-shm"] {
            let mut s = p.as_os_str().to_owned();
            s.push(suffix);
            let _ = std::fs::remove_file(s);
        }
    };
    remove(&path);
    let url = format!("sqlite://{}", path.display());
    let result = run_backend(&url, "sqlite", sizes, 42).await;
    if keep {
        println!("[sqlite] kept database {}", path.display());
    } else {
        remove(&path);
    }
    result
}

fn main() -> Result<()> {
    let scale: f64 = match std::env::var("KOMMUTATOR_BENCH_SCALE") {
        Ok(s) => s
            .parse()
            .context("KOMMUTATOR_BENCH_SCALE must be a number")?,
        Err(_) => 1.0,
    };
    anyhow::ensure!(scale > 0.0, "KOMMUTATOR_BENCH_SCALE must be positive");
    let keep = std::env::var("KOMMUTATOR_BENCH_KEEP").as_deref() == Ok("1");
    let only = std::env::var("KOMMUTATOR_BENCH_ONLY").ok();
    let pg = std::env::var("KOMMUTATOR_BENCH_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let sizes = Sizes::new(scale);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let mut stats = Vec::new();
        let mut backends = serde_json::Map::new();
        println!("storage benchmark: scale {scale}");
        print_header();
        stats.extend(normalize_only(&mut StdRng::seed_from_u64(7)));
        if only.as_deref().is_none_or(|o| o == "sqlite") {
            let (s, info) = run_sqlite(sizes, keep).await?;
            stats.extend(s);
            backends.insert("sqlite".into(), info);
        }
        match (&pg, only.as_deref()) {
            (Some(server), None | Some("postgres")) => {
                let (s, info) = run_postgres(server, sizes, keep).await?;
                stats.extend(s);
                backends.insert("postgres".into(), info);
            }
            (None, Some("postgres")) => {
                anyhow::bail!("KOMMUTATOR_BENCH_ONLY=postgres needs KOMMUTATOR_BENCH_DATABASE_URL")
            }
            (None, None) => println!("(PostgreSQL skipped: set KOMMUTATOR_BENCH_DATABASE_URL)"),
            _ => {}
        }
        println!();
        println!("summary (latencies in microseconds; found = items per query)");
        print_header();
        for s in &stats {
            print_row(s);
        }
        let doc = json!({
            "bench": "storage",
            "scale": scale,
            "backends": backends,
            "results": stats.iter().map(|s| json!({
                "operation": s.op,
                "backend": s.backend,
                "n": s.n,
                "p50_us": (s.p50 * 10.0).round() / 10.0,
                "p90_us": (s.p90 * 10.0).round() / 10.0,
                "p99_us": (s.p99 * 10.0).round() / 10.0,
                "max_us": (s.max * 10.0).round() / 10.0,
                "ops_per_sec": s.ops.round(),
                "found_per_query": (s.found * 100.0).round() / 100.0,
            })).collect::<Vec<_>>(),
        });
        println!("BENCH_JSON {doc}");
        Ok(())
    })
}
