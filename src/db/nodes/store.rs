//! Node assignment on the tokenserver tables: the account's record rules are the
//! single-box ones (`crate::db::users::apply_plan`); what this adds is where a
//! new row lives. A new account goes to the least loaded node that takes new
//! users; a user keeps their node until it is downed, drained or removed, and is
//! then given a new row (a new uid, so no stale data can ever show) on another.

use std::sync::Arc;

use super::conn::{Kind, NodeConn};
use super::schema;
use super::{Assigned, NodeChange, NodeInfo, NodeUser, NodesDb, NodesError};
use crate::db::sql::{email_key, Engine, Row, Value};
use crate::db::users::{apply_plan, without_writing, UserRows};
use crate::db::{DbError, DbResult, NewUser, UserRecord, UserState};
use crate::uid::Uid;

/// Share of a node's capacity released when no node has any available (the
/// reference servers' default).
const RELEASE_RATE: f64 = 0.1;

/// Opens one more connection (a lost one is replaced on the next request).
pub(super) type Connect = Arc<dyn Fn() -> DbResult<Box<dyn NodeConn>> + Send + Sync>;

/// One session on the tokenserver database.
pub struct NodeStore {
    conn: Option<Box<dyn NodeConn>>,
    connect: Connect,
    service: i64,
    pattern: String,
}

/// Where a row's node stands.
#[derive(Debug, Clone)]
struct Placed {
    nodeid: i64,
    /// `None`: the node was removed.
    url: Option<String>,
    downed: bool,
}

const ROWS: &str = "SELECT u.uid, u.generation, u.client_state, u.keys_changed_at, u.created_at,
        u.replaced_at, u.nodeid, n.node, n.downed
 FROM users u LEFT JOIN nodes n ON n.id = u.nodeid
 WHERE u.email = ? AND u.service = ?
 ORDER BY u.created_at DESC, u.uid DESC LIMIT 20";

fn uid(raw: i64) -> DbResult<Uid> {
    Uid::new(raw).ok_or_else(|| DbError::Backend(format!("stored uid {raw} out of range").into()))
}

fn read_rows(
    c: &mut dyn NodeConn,
    service: i64,
    email: &str,
) -> DbResult<Vec<(UserRecord, Placed)>> {
    let rows = c.query(ROWS, &[email.into(), service.into()])?;
    rows.iter().map(read_row).collect()
}

fn read_row(r: &Row) -> DbResult<(UserRecord, Placed)> {
    Ok((
        UserRecord {
            uid: uid(r.int(0)?)?,
            generation: r.int(1)?,
            client_state: r.text(2)?,
            keys_changed_at: r.opt_int(3)?,
            created_at: r.int(4)?,
            replaced_at: r.opt_int(5)?,
        },
        Placed {
            nodeid: r.int(6)?,
            url: r.opt_text(7)?,
            downed: r.opt_int(8)?.unwrap_or(0) != 0,
        },
    ))
}

/// Whether the account's current row may stay where it is.
fn stays(current: &(UserRecord, Placed)) -> bool {
    current.0.replaced_at.is_none() && current.1.url.is_some() && !current.1.downed
}

/// The least loaded node taking new users, by `log(load) / log(capacity)` as both
/// reference servers rank them (an empty node first); ties go to the older node.
fn pick(rows: &[Row]) -> DbResult<Option<(i64, String)>> {
    let mut best: Option<(f64, i64, String)> = None;
    for r in rows {
        let (id, url, load, capacity) = (r.int(0)?, r.text(1)?, r.int(2)?, r.int(3)?);
        let score = if load <= 0 {
            f64::NEG_INFINITY
        } else if capacity <= 1 {
            f64::INFINITY
        } else {
            (load as f64).ln() / (capacity as f64).ln()
        };
        if best
            .as_ref()
            .is_none_or(|(s, i, _)| score < *s || (score == *s && id < *i))
        {
            best = Some((score, id, url));
        }
    }
    Ok(best.map(|(_, id, url)| (id, url)))
}

/// Chooses a node for a new row and counts the user on it.
///
/// On MySQL/MariaDB and PostgreSQL (READ COMMITTED) another first sign-in may
/// take the last place of the node read here before this one does: the place is
/// taken only if it is still free when the row is updated (the update waits for
/// the other one and then sees its count), else the next best node is tried.
fn assign(c: &mut dyn NodeConn, service: i64) -> DbResult<(i64, String)> {
    let mut released = false;
    // Nodes read with room that had none left by the time of the update.
    let mut taken: Vec<i64> = Vec::new();
    loop {
        let rows: Vec<Row> = c
            .query(
                "SELECT id, node, current_load, capacity FROM nodes
                 WHERE service = ? AND available > 0 AND capacity > current_load
                   AND downed = 0 AND backoff = 0",
                &[service.into()],
            )?
            .into_iter()
            .filter(|r| !matches!(r.int(0), Ok(id) if taken.contains(&id)))
            .collect();
        match pick(&rows)? {
            Some((id, url)) => {
                let counted = c.execute(
                    "UPDATE nodes SET current_load = current_load + 1,
                            available = CASE WHEN available > 0 THEN available - 1 ELSE 0 END
                     WHERE id = ? AND available > 0 AND capacity > current_load
                       AND downed = 0 AND backoff = 0",
                    &[id.into()],
                )?;
                if counted > 0 {
                    return Ok((id, url));
                }
                taken.push(id);
            }
            None if !released => {
                release(c, service)?;
                released = true;
                taken.clear();
            }
            None => return Err(DbError::NoNode),
        }
    }
}

/// Makes part of each node's spare capacity available again (at least one
/// place, so a node of capacity under 10 is not stuck at zero).
fn release(c: &mut dyn NodeConn, service: i64) -> DbResult<()> {
    let rows = c.query(
        "SELECT id, current_load, capacity FROM nodes
         WHERE service = ? AND available <= 0 AND capacity > current_load
           AND downed = 0 AND backoff = 0",
        &[service.into()],
    )?;
    for r in rows {
        let (id, load, capacity) = (r.int(0)?, r.int(1)?, r.int(2)?);
        let share = ((capacity as f64 * RELEASE_RATE).ceil() as i64).max(1);
        let available = share.min(capacity - load);
        c.execute(
            "UPDATE nodes SET available = ? WHERE id = ?",
            &[available.into(), id.into()],
        )?;
    }
    Ok(())
}

/// `apply_plan`'s row operations on the tokenserver tables.
struct Rows<'a> {
    c: &'a mut dyn NodeConn,
    service: i64,
    /// Where the account's current row is, when it may stay there.
    home: Option<(i64, String)>,
    /// The node of the row `insert` wrote last.
    placed: Option<(i64, String)>,
    all: Vec<(UserRecord, Placed)>,
}

impl UserRows for Rows<'_> {
    fn rows(&mut self, email: &str) -> DbResult<Vec<UserRecord>> {
        self.all = read_rows(self.c, self.service, email)?;
        self.home = self
            .all
            .first()
            .filter(|r| stays(r))
            .and_then(|r| r.1.url.clone().map(|u| (r.1.nodeid, u)));
        Ok(self.all.iter().map(|r| r.0.clone()).collect())
    }
    fn set_replaced(&mut self, uid: Uid, at: i64) -> DbResult<()> {
        self.c.execute(
            "UPDATE users SET replaced_at = ? WHERE uid = ?",
            &[at.into(), uid.into()],
        )?;
        Ok(())
    }
    fn accounts(&mut self) -> DbResult<i64> {
        let rows = self.c.query(
            "SELECT COUNT(DISTINCT email) FROM users WHERE service = ?",
            &[self.service.into()],
        )?;
        rows.first().map_or(Ok(0), |r| r.int(0))
    }
    fn insert(&mut self, email: &str, new: &NewUser, created_at: i64) -> DbResult<Uid> {
        let (nodeid, url) = match self.home.clone() {
            Some(home) => home,
            None => assign(self.c, self.service)?,
        };
        let raw = self.c.insert_returning(
            "INSERT INTO users (service, email, generation, client_state, created_at,
                                replaced_at, nodeid, keys_changed_at)
             VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
            &[
                self.service.into(),
                email.into(),
                new.generation.into(),
                new.client_state.as_str().into(),
                created_at.into(),
                nodeid.into(),
                new.keys_changed_at.into(),
            ],
            "uid",
        )?;
        self.placed = Some((nodeid, url));
        uid(raw)
    }
    fn replace_others(&mut self, email: &str, at: i64, keep: Uid) -> DbResult<()> {
        self.c.execute(
            "UPDATE users SET replaced_at = ?
             WHERE service = ? AND email = ? AND replaced_at IS NULL AND uid <> ?",
            &[at.into(), self.service.into(), email.into(), keep.into()],
        )?;
        Ok(())
    }
    fn update(&mut self, uid: Uid, generation: i64, keys_changed_at: Option<i64>) -> DbResult<()> {
        self.c.execute(
            "UPDATE users SET generation = ?, keys_changed_at = ? WHERE uid = ?",
            &[generation.into(), keys_changed_at.into(), uid.into()],
        )?;
        Ok(())
    }
}

impl NodeStore {
    pub(super) fn open(connect: Connect) -> DbResult<NodeStore> {
        let mut conn = connect()?;
        let (service, pattern) = schema::ensure(conn.as_mut())?;
        Ok(NodeStore {
            conn: Some(conn),
            connect,
            service,
            pattern,
        })
    }

    /// Opens further sessions on the same database (the tables are in place).
    pub fn opener(&self) -> crate::db::Opener<NodeStore> {
        let connect = Arc::clone(&self.connect);
        let (service, pattern) = (self.service, self.pattern.clone());
        Box::new(move || {
            Ok(Box::new(NodeStore {
                conn: Some(connect()?),
                connect: Arc::clone(&connect),
                service,
                pattern: pattern.clone(),
            }))
        })
    }

    fn conn(&mut self) -> DbResult<&mut dyn NodeConn> {
        if self.conn.as_ref().is_none_or(|c| c.broken()) {
            self.conn = None;
            self.conn = Some((self.connect)()?);
        }
        Ok(self.conn.as_mut().expect("connected above").as_mut())
    }

    /// Runs `f` in a write transaction: committed when it returns `Ok(Some)`,
    /// rolled back otherwise.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut dyn NodeConn, i64) -> DbResult<Option<T>>,
    ) -> DbResult<Option<T>> {
        let service = self.service;
        let c = self.conn()?;
        c.begin_write()?;
        match f(c, service) {
            Ok(Some(v)) => {
                c.commit()?;
                Ok(Some(v))
            }
            Ok(None) => {
                c.rollback()?;
                Ok(None)
            }
            Err(e) => {
                let _ = c.rollback();
                Err(e)
            }
        }
    }

    fn endpoint(&self, node: &str, uid: Uid) -> String {
        self.pattern
            .replace("{node}", node)
            .replace("{uid}", &uid.to_string())
            .replace("{service}", "sync")
            .replace("{version}", "1.5")
    }

    fn node_id(c: &mut dyn NodeConn, service: i64, url: &str) -> DbResult<Option<i64>> {
        let rows = c.query(
            "SELECT id FROM nodes WHERE service = ? AND node = ?",
            &[service.into(), url.into()],
        )?;
        rows.first().map(|r| r.int(0)).transpose()
    }

    /// Marks the current rows on `nodeid` replaced: those users get a new row on
    /// another node at their next token. Returns how many.
    fn unassign(c: &mut dyn NodeConn, service: i64, nodeid: i64, now_ms: i64) -> DbResult<u64> {
        c.execute(
            "UPDATE users SET replaced_at = ?
             WHERE service = ? AND nodeid = ? AND replaced_at IS NULL",
            &[now_ms.into(), service.into(), nodeid.into()],
        )
    }
}

impl NodesDb for NodeStore {
    fn token_user(
        &mut self,
        email: &str,
        now_ms: i64,
        decide: &mut dyn FnMut(&UserState) -> crate::db::UserPlan,
    ) -> DbResult<Option<Assigned>> {
        let service = self.service;
        // A returning user with nothing to change needs no lock and no write.
        let unlocked = read_rows(self.conn()?, service, email)?;
        if let Some(first) = unlocked.first().filter(|r| stays(r)) {
            let records: Vec<UserRecord> = unlocked.iter().map(|r| r.0.clone()).collect();
            if let Some(answer) = without_writing(&records, decide) {
                let url = first.1.url.clone().expect("stays() checked the node");
                return Ok(answer.map(|record| Assigned {
                    endpoint: self.endpoint(&url, record.uid),
                    node: url,
                    record,
                }));
            }
        }
        let assigned = self.write(|c, service| {
            c.lock(email_key(email))?;
            let mut rows = Rows {
                c,
                service,
                home: None,
                placed: None,
                all: Vec::new(),
            };
            let Some(mut record) = apply_plan(&mut rows, email, now_ms, decide)? else {
                return Ok(None);
            };
            let mut node = match (&rows.placed, rows.all.first()) {
                (Some((_, url)), _) => Some(url.clone()),
                (None, Some(current)) if stays(current) => current.1.url.clone(),
                _ => None,
            };
            if node.is_none() {
                // The node went away (drained, downed, removed): the same account
                // values on a new row elsewhere; older rows become replaced.
                let created = record.created_at.saturating_add(1).max(now_ms);
                let new = NewUser {
                    generation: record.generation,
                    client_state: record.client_state.clone(),
                    keys_changed_at: record.keys_changed_at,
                    node: String::new(),
                };
                rows.home = None;
                let uid = rows.insert(email, &new, created)?;
                rows.replace_others(email, created, uid)?;
                record = UserRecord {
                    uid,
                    created_at: created,
                    replaced_at: None,
                    ..record
                };
                node = rows.placed.as_ref().map(|(_, url)| url.clone());
            }
            let node = node.ok_or(DbError::NoNode)?;
            Ok(Some((record, node)))
        })?;
        Ok(assigned.map(|(record, node)| Assigned {
            endpoint: self.endpoint(&node, record.uid),
            node,
            record,
        }))
    }

    fn nodes(&mut self) -> DbResult<Vec<NodeInfo>> {
        let service = self.service;
        let rows = self.conn()?.query(
            "SELECT n.id, n.node, n.available, n.current_load, n.capacity, n.downed, n.backoff,
                    (SELECT COUNT(*) FROM users u
                     WHERE u.nodeid = n.id AND u.service = n.service AND u.replaced_at IS NULL)
             FROM nodes n WHERE n.service = ? ORDER BY n.id",
            &[service.into()],
        )?;
        rows.iter()
            .map(|r| {
                Ok(NodeInfo {
                    id: r.int(0)?,
                    url: r.text(1)?,
                    available: r.int(2)?,
                    current_load: r.int(3)?,
                    capacity: r.int(4)?,
                    downed: r.int(5)? != 0,
                    backoff: r.int(6)? != 0,
                    users: r.int(7)?,
                })
            })
            .collect()
    }

    fn add_node(&mut self, url: &str, capacity: i64) -> Result<(), NodesError> {
        let added = self.write(|c, service| {
            if Self::node_id(c, service, url)?.is_some() {
                return Ok(None);
            }
            c.execute(
                "INSERT INTO nodes (service, node, available, current_load, capacity, downed, backoff)
                 VALUES (?, ?, ?, 0, ?, 0, 0)",
                &[service.into(), url.into(), capacity.into(), capacity.into()],
            )?;
            Ok(Some(()))
        })?;
        added.ok_or_else(|| NodesError::Exists(url.to_string()))
    }

    fn set_node(&mut self, url: &str, change: &NodeChange) -> Result<(), NodesError> {
        let done = self.write(|c, service| {
            let Some(id) = Self::node_id(c, service, url)? else {
                return Ok(None);
            };
            if let Some(capacity) = change.capacity {
                c.execute(
                    "UPDATE nodes SET capacity = ?,
                         available = CASE WHEN ? > current_load THEN ? - current_load ELSE 0 END
                     WHERE id = ?",
                    &[capacity.into(), capacity.into(), capacity.into(), id.into()],
                )?;
            }
            if let Some(downed) = change.downed {
                c.execute(
                    "UPDATE nodes SET downed = ? WHERE id = ?",
                    &[i64::from(downed).into(), id.into()],
                )?;
            }
            if let Some(backoff) = change.backoff {
                c.execute(
                    "UPDATE nodes SET backoff = ? WHERE id = ?",
                    &[i64::from(backoff).into(), id.into()],
                )?;
            }
            Ok(Some(()))
        })?;
        done.ok_or_else(|| NodesError::Unknown(url.to_string()))
    }

    fn drain_node(&mut self, url: &str, now_ms: i64) -> Result<u64, NodesError> {
        let moved = self.write(|c, service| {
            let Some(id) = Self::node_id(c, service, url)? else {
                return Ok(None);
            };
            c.execute(
                "UPDATE nodes SET capacity = 0, available = 0 WHERE id = ?",
                &[id.into()],
            )?;
            Self::unassign(c, service, id, now_ms).map(Some)
        })?;
        moved.ok_or_else(|| NodesError::Unknown(url.to_string()))
    }

    fn remove_node(&mut self, url: &str, now_ms: i64) -> Result<u64, NodesError> {
        let moved = self.write(|c, service| {
            let Some(id) = Self::node_id(c, service, url)? else {
                return Ok(None);
            };
            let moved = Self::unassign(c, service, id, now_ms)?;
            c.execute("DELETE FROM nodes WHERE id = ?", &[id.into()])?;
            Ok(Some(moved))
        })?;
        moved.ok_or_else(|| NodesError::Unknown(url.to_string()))
    }

    fn import_users(&mut self, node: &str, users: &[NodeUser], above: i64) -> DbResult<u64> {
        let kind = self.conn()?.kind();
        let imported = self.write(|c, service| {
            let nodeid = Self::node_id(c, service, node)?
                .ok_or_else(|| DbError::Backend(format!("no node {node}").into()))?;
            let mut n = 0;
            let mut top = above;
            for u in users {
                top = top.max(u.uid);
                let known = c.query("SELECT 1 FROM users WHERE uid = ?", &[u.uid.into()])?;
                if !known.is_empty() {
                    continue;
                }
                c.execute(
                    "INSERT INTO users (uid, service, email, generation, client_state,
                                        created_at, replaced_at, nodeid, keys_changed_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    &[
                        u.uid.into(),
                        service.into(),
                        u.email.as_str().into(),
                        u.generation.into(),
                        u.client_state.as_str().into(),
                        u.created_at.into(),
                        u.replaced_at.into(),
                        nodeid.into(),
                        u.keys_changed_at.into(),
                    ],
                )?;
                n += 1;
            }
            let current = c.query(
                "SELECT COUNT(*) FROM users WHERE nodeid = ? AND replaced_at IS NULL",
                &[nodeid.into()],
            )?;
            let load = current.first().map_or(Ok(0), |r| r.int(0))?;
            c.execute(
                "UPDATE nodes SET current_load = ?,
                     available = CASE WHEN capacity > ? THEN capacity - ? ELSE 0 END
                 WHERE id = ?",
                &[load.into(), load.into(), load.into(), nodeid.into()],
            )?;
            next_uid_above(c, kind, top)?;
            Ok(Some((n, top)))
        })?;
        let Some((n, top)) = imported else {
            return Ok(0);
        };
        if kind == Kind::Server(Engine::Mysql) {
            // AUTO_INCREMENT follows the rows inserted; this covers uids above them
            // (deleted accounts' on the single box).
            self.conn()?
                .batch(&format!("ALTER TABLE users AUTO_INCREMENT = {}", top + 1))?;
        }
        Ok(n)
    }
}

/// Makes the engine's next generated uid greater than `top` (uids handed out on the
/// single box, deleted accounts' included, are never given again).
fn next_uid_above(c: &mut dyn NodeConn, kind: Kind, top: i64) -> DbResult<()> {
    if top <= 0 {
        return Ok(());
    }
    match kind {
        Kind::Sqlite => {
            c.execute(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = 'users' AND seq < ?",
                &[top.into(), top.into()],
            )?;
            let present = c.query("SELECT 1 FROM sqlite_sequence WHERE name = 'users'", &[])?;
            if present.is_empty() {
                c.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('users', ?)",
                    &[top.into()],
                )?;
            }
        }
        Kind::Server(Engine::Postgresql) => {
            c.query(
                "SELECT setval('users_uid_seq', GREATEST(?i, (SELECT last_value FROM users_uid_seq)))",
                &[Value::Int(top)],
            )?;
        }
        // ALTER TABLE would commit the transaction: the caller runs it afterwards.
        Kind::Server(Engine::Mysql) => {}
    }
    Ok(())
}
