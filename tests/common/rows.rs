//! Rows put into and counted in a test server's database with SQL every engine accepts
//! (through [`Server::db_sql`]), for the operator-command tests.

use super::Server;

#[track_caller]
pub fn count(c: &Server, sql: &str) -> i64 {
    c.db_int(sql)
}

pub fn now_s() -> i64 {
    super::now() as i64
}

/// Row counts of every table the commands touch.
pub fn table_counts(c: &Server) -> Vec<(&'static str, i64)> {
    [
        "bso",
        "user_collections",
        "batch_uploads",
        "batch_upload_items",
        "users",
        "syncserver_fcgi_deleted_uids",
    ]
    .into_iter()
    .map(|t| (t, count(c, &format!("SELECT COUNT(*) FROM {t}"))))
    .collect()
}

pub fn insert_user(c: &Server, uid: i64, email: &str, created: i64, replaced: Option<i64>) {
    let replaced = replaced.map_or("NULL".to_string(), |r| r.to_string());
    c.db_sql(&format!(
        "INSERT INTO users (uid, service, email, generation, client_state, created_at, replaced_at)
         VALUES ({uid}, 'sync-1.5', '{email}', 0, '', {created}, {replaced})"
    ));
}

pub fn cid(c: &Server, name: &str) -> i64 {
    count(
        c,
        &format!("SELECT collectionid FROM collections WHERE name = '{name}'"),
    )
}

/// Inserts `n` records of `uid` in collection `cid` that expire at `ttl` (a few hundred rows
/// per statement: the server engines' clients take the SQL on their command line).
pub fn insert_expiring(c: &Server, uid: i64, cid: i64, prefix: &str, n: usize, ttl: i64) {
    let modified = (ttl - 100) * 1000;
    let rows: Vec<String> = (0..n)
        .map(|i| format!("({uid}, {cid}, '{prefix}{i}', {modified}, 'gone', 4, {ttl})"))
        .collect();
    for chunk in rows.chunks(500) {
        c.db_sql(&format!(
            "INSERT INTO bso (userid, collection, id, modified, payload, payload_size, ttl)
             VALUES {}",
            chunk.join(", ")
        ));
    }
}
