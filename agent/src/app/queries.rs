//! The SQL the app runs on `labapp` (tables made by the database role, see
//! `roles/sql.rs`), one function per statement, every value a parameter of a prepared
//! statement. Rows are read column by column (`get_opt`), so an unexpected value is an error,
//! never a panic.

use lab_api::app::Post;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Conn, Row};

pub type Result<T> = std::result::Result<T, mysql_async::Error>;

fn odd(what: String) -> mysql_async::Error {
    mysql_async::Error::Other(what.into())
}

/// Column `index` of `row` as a `T`.
fn column<T: FromValue>(row: &Row, index: usize) -> Result<T> {
    match row.get_opt::<T, usize>(index) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(odd(format!("column {index}: {e}"))),
        None => Err(odd(format!("no column {index}"))),
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: u64,
    pub name: String,
    pub password_hash: String,
}

/// Inserts a user; its id. A taken name fails with MariaDB's duplicate-key error (1062).
pub async fn insert_user(conn: &mut Conn, name: &str, password_hash: &str) -> Result<u64> {
    conn.exec_drop(
        "INSERT INTO users (name, password_hash) VALUES (?, ?)",
        (name, password_hash),
    )
    .await?;
    conn.last_insert_id()
        .ok_or_else(|| odd("no id for the new user".into()))
}

pub async fn user_by_name(conn: &mut Conn, name: &str) -> Result<Option<UserRow>> {
    let row: Option<Row> = conn
        .exec_first(
            "SELECT id, name, password_hash FROM users WHERE name = ?",
            (name,),
        )
        .await?;
    row.map(|row| {
        Ok(UserRow {
            id: column(&row, 0)?,
            name: column(&row, 1)?,
            password_hash: column(&row, 2)?,
        })
    })
    .transpose()
}

/// Inserts a post by `user_id`; the post as stored (its id and time).
pub async fn insert_post(conn: &mut Conn, user_id: u64, body: &str) -> Result<Post> {
    conn.exec_drop(
        "INSERT INTO posts (user_id, body) VALUES (?, ?)",
        (user_id, body),
    )
    .await?;
    let id = conn
        .last_insert_id()
        .ok_or_else(|| odd("no id for the new post".into()))?;
    post_by_id(conn, id)
        .await?
        .ok_or_else(|| odd(format!("post {id} not found after its insert")))
}

fn post_of(row: &Row) -> Result<Post> {
    let created: Option<i64> = column(row, 3)?;
    Ok(Post {
        id: column(row, 0)?,
        user_id: column(row, 1)?,
        body: column(row, 2)?,
        created_at: rfc3339_utc(created.unwrap_or(0)),
    })
}

pub async fn post_by_id(conn: &mut Conn, id: u64) -> Result<Option<Post>> {
    let row: Option<Row> = conn
        .exec_first(
            "SELECT id, user_id, body, UNIX_TIMESTAMP(created_at) FROM posts WHERE id = ?",
            (id,),
        )
        .await?;
    row.as_ref().map(post_of).transpose()
}

/// The newest `limit` posts of `user_id`, newest first; None when there is no such user.
pub async fn user_posts(conn: &mut Conn, user_id: u64, limit: usize) -> Result<Option<Vec<Post>>> {
    let rows: Vec<Row> = conn
        .exec(
            "SELECT u.id, p.id, p.body, UNIX_TIMESTAMP(p.created_at) FROM users u \
             LEFT JOIN posts p ON p.user_id = u.id WHERE u.id = ? ORDER BY p.id DESC LIMIT ?",
            (user_id, limit as u64),
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut posts = Vec::with_capacity(rows.len());
    for row in &rows {
        // A user without posts: one row with NULLs for the post.
        let Some(id) = column::<Option<u64>>(row, 1)? else {
            continue;
        };
        let created: Option<i64> = column(row, 3)?;
        posts.push(Post {
            id,
            user_id,
            body: column(row, 2)?,
            created_at: rfc3339_utc(created.unwrap_or(0)),
        });
    }
    Ok(Some(posts))
}

/// Unix seconds as RFC 3339 UTC (`2026-01-31T12:00:00Z`); the date by Howard Hinnant's
/// `civil_from_days`.
pub fn rfc3339_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59Z");
    }
}
