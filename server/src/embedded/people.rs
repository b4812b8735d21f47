//! Synthetic people, for measuring the directory at an organisation's scale
//! (`PORTRAIT_SEED_PEOPLE`, embedded identity only; `cargo xtask bench` sets it).

use std::time::Instant;

use app::domain::{search_key, ImageContentType, KeyKind, PhotoKey, UserId};
use app::service::ports::BoxError;
use sqlx::AnyPool;

use crate::db::value_rows;

const FIRST: [&str; 40] = [
    "Alice", "Ali", "Alicia", "Amara", "Ben", "Bianca", "Carlos", "Chen", "Dmitri", "Elena",
    "Emeka", "Fatima", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jamal", "Julia", "Kenji",
    "Lara", "Leon", "Maya", "Mateo", "Nadia", "Noah", "Olga", "Omar", "Priya", "Quinn", "Rosa",
    "Sami", "Sofia", "Tomas", "Uma", "Viktor", "Wei", "Yara", "Zoe",
];
const LAST: [&str; 40] = [
    "Abbott",
    "Adeyemi",
    "Alvarez",
    "Bauer",
    "Becker",
    "Chowdhury",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Hopper",
    "Ito",
    "Jensen",
    "Kaur",
    "Kowalski",
    "Lambert",
    "Li",
    "Moreau",
    "Murphy",
    "Nakamura",
    "Novak",
    "Okafor",
    "Olsen",
    "Patel",
    "Quispe",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Tanaka",
    "Usman",
    "Varga",
    "Walsh",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Zimmer",
];

/// Rows per INSERT: 7 parameters each, so 7,000, under SQLite's 32,766 and PostgreSQL's
/// 65,535.
const ROWS_PER_INSERT: usize = 1_000;
/// Rows per transaction: 100,000 people are five commits.
const ROWS_PER_TRANSACTION: usize = 20_000;

/// Person `n`: the id is the number, so a second start finds the same rows.
fn id(n: usize) -> UserId {
    UserId::parse(format!("seed-{n:07}")).expect("a plain id")
}

/// Makes sure people `0..count` exist (Members; every even one with a picture key, whose object
/// need not exist: a read URL is signed without asking the store). Safe on every start: rows
/// already there are left as they are.
pub async fn seed_people(pool: &AnyPool, count: usize) -> Result<(), BoxError> {
    if count == 0 {
        return Ok(());
    }
    let last: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
        .bind(id(count - 1).as_str())
        .fetch_optional(pool)
        .await?;
    if last.is_some() {
        return Ok(());
    }
    let started = Instant::now();
    let mut people = (0..count).peekable();
    while people.peek().is_some() {
        let mut tx = pool.begin().await?;
        for _ in 0..ROWS_PER_TRANSACTION / ROWS_PER_INSERT {
            let batch: Vec<usize> = people.by_ref().take(ROWS_PER_INSERT).collect();
            if batch.is_empty() {
                break;
            }
            insert(&mut tx, &batch).await?;
        }
        tx.commit().await?;
    }
    tracing::info!(people = count, took = ?started.elapsed(), "seeded synthetic people");
    Ok(())
}

async fn insert(conn: &mut sqlx::AnyConnection, batch: &[usize]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO users (id, email_key, email, name_key, name, photo_key, version, phone, \
         role, status, joined_at) VALUES {} ON CONFLICT (id) DO NOTHING",
        value_rows(batch.len(), 7, ", NULL, 'Member', 'Active', '2025-06-01'")
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for &n in batch {
        let id = id(n);
        let (first, last) = (FIRST[n % FIRST.len()], LAST[(n / FIRST.len()) % LAST.len()]);
        let name = format!("{first} {last}");
        let email = format!("{}.{}.{n}@people.example", first, last).to_lowercase();
        let picture = (n % 2 == 0).then(|| {
            let key = PhotoKey::generate(
                &id,
                KeyKind::Picture,
                ImageContentType::Jpeg,
                1_750_000_000_000,
                n as u64,
            );
            key.as_str().to_owned()
        });
        insert = insert
            .bind(id.as_str().to_owned())
            .bind(search_key(&email))
            .bind(email)
            .bind(search_key(&name))
            .bind(name)
            .bind(picture)
            .bind(0_i64);
    }
    insert.execute(conn).await.map(drop)
}
