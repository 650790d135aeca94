//! `nodes ...` and `migrate-to-nodes`: the storage nodes a tokenserver with node
//! assignment (`[tokenserver] backend = ...sqlnode.SQLNodeAssignment`) spreads
//! accounts over, kept in its own database (`[tokenserver] sqluri`).

use serde_json::json;

use super::{open, table, AdminError};
use crate::auth::node_secret;
use crate::config::{DatabaseUri, PublicUrl, Settings};
use crate::db;
use crate::db::nodes::{NodeInfo, NodeStore, NodesDb, NodesError};
use crate::options::NodesCommand;
use crate::timestamp::now_ms;

/// `nodes.node` holds at most this many characters (the reference schema's VARCHAR(64)).
const MAX_NODE_URL: usize = 64;

impl From<NodesError> for AdminError {
    fn from(e: NodesError) -> Self {
        match e {
            NodesError::Db(e) => AdminError::Db(e),
            other => AdminError::Refused(other.to_string()),
        }
    }
}

/// A node URL as tokens will carry it: normalised like `public_url`, which is
/// what the node compares them with.
fn node_url(raw: &str) -> Result<String, AdminError> {
    let url = PublicUrl::parse(raw)
        .map_err(|e| AdminError::Refused(format!("node URL {raw:?}: {e}")))?
        .url;
    if url.chars().count() > MAX_NODE_URL {
        return Err(AdminError::Refused(format!(
            "node URL {url} is longer than {MAX_NODE_URL} characters, which the nodes table cannot hold"
        )));
    }
    Ok(url)
}

fn tokenserver_db(settings: &Settings) -> Result<NodeStore, AdminError> {
    let Some(uri) = &settings.nodes_database else {
        return Err(AdminError::Refused(
            "this configuration has no node assignment: set [tokenserver] backend = tokenserver.assignment.sqlnode.SQLNodeAssignment and [tokenserver] sqluri (see `migrate-to-nodes`)".into(),
        ));
    };
    db::open_nodes(uri).map_err(AdminError::Db)
}

fn node_json(n: &NodeInfo) -> serde_json::Value {
    json!({
        "id": n.id, "url": n.url, "users": n.users, "current_load": n.current_load,
        "capacity": n.capacity, "available": n.available, "downed": n.downed,
        "backoff": n.backoff,
    })
}

fn list(db: &mut NodeStore, as_json: bool) -> Result<String, AdminError> {
    let nodes = db.nodes()?;
    if as_json {
        return Ok(
            serde_json::Value::from(nodes.iter().map(node_json).collect::<Vec<_>>()).to_string(),
        );
    }
    if nodes.is_empty() {
        return Ok("no storage nodes (add one with `nodes add URL --capacity N`)".into());
    }
    let flag = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.url.clone(),
                n.users.to_string(),
                n.current_load.to_string(),
                n.capacity.to_string(),
                n.available.to_string(),
                flag(n.downed),
                flag(n.backoff),
            ]
        })
        .collect();
    Ok(table::render(
        &[
            "node",
            "users",
            "load",
            "capacity",
            "available",
            "downed",
            "backoff",
        ],
        &rows,
        &[1, 2, 3, 4],
    ))
}

fn said(as_json: bool, value: serde_json::Value, text: String) -> String {
    if as_json {
        value.to_string()
    } else {
        text
    }
}

/// Runs one `nodes` subcommand.
pub fn nodes(
    settings: &Settings,
    command: &NodesCommand,
    as_json: bool,
) -> Result<String, AdminError> {
    if let NodesCommand::Secret { url } = command {
        let url = node_url(url)?;
        let Some(master) = settings.secrets.last() else {
            return Err(AdminError::Refused(
                "[syncserver] secret is not set: node secrets are derived from it".into(),
            ));
        };
        let secret = node_secret(master, &url);
        return Ok(said(
            as_json,
            json!({"url": url, "node_secret": secret}),
            format!("{secret}\n(put it in that node's ini as [storage] node_secret = ..., instead of [syncserver] secret)"),
        ));
    }
    let mut db = tokenserver_db(settings)?;
    match command {
        NodesCommand::List => list(&mut db, as_json),
        NodesCommand::Add { url, capacity } => {
            let url = node_url(url)?;
            db.add_node(&url, *capacity)?;
            Ok(said(
                as_json,
                json!({"added": url, "capacity": capacity}),
                format!("added node {url} (capacity {capacity})"),
            ))
        }
        NodesCommand::Set { url, change } => {
            let url = node_url(url)?;
            db.set_node(&url, change)?;
            let node = db.nodes()?.into_iter().find(|n| n.url == url);
            Ok(match node {
                Some(n) if as_json => node_json(&n).to_string(),
                _ => format!("node {url} updated\n{}", list(&mut db, false)?),
            })
        }
        NodesCommand::Drain { url } => {
            let url = node_url(url)?;
            let moved = db.drain_node(&url, now_ms())?;
            Ok(said(
                as_json,
                json!({"drained": url, "users_moving": moved}),
                format!("node {url} takes no new users; {moved} user(s) move to another node at their next token (within the token duration, {} s)", settings.token_duration),
            ))
        }
        NodesCommand::Remove { url } => {
            let url = node_url(url)?;
            let moved = db.remove_node(&url, now_ms())?;
            Ok(said(
                as_json,
                json!({"removed": url, "users_moving": moved}),
                format!(
                    "node {url} removed; {moved} user(s) move to another node at their next token"
                ),
            ))
        }
        NodesCommand::Secret { .. } => unreachable!("answered above"),
    }
}

/// `migrate-to-nodes --to URI`: the tokenserver tables for this box's accounts,
/// this box as their node, uids kept.
pub fn migrate_to_nodes(
    settings: &Settings,
    to: &str,
    capacity: Option<i64>,
    as_json: bool,
) -> Result<String, AdminError> {
    let target =
        DatabaseUri::parse(to).map_err(|e| AdminError::Refused(format!("--to {to}: {e}")))?;
    if target == DatabaseUri::Memory {
        return Err(AdminError::Refused(
            "--to must name a database that lasts".into(),
        ));
    }
    if target.same_database(&settings.database) {
        return Err(AdminError::Refused(
            "--to must be another database than this box's own (sqluri): both hold a table named users".into(),
        ));
    }
    let node = node_url(&settings.public_url.url)?;
    let mut source = open(settings, false)?;
    let users = source.user_records()?;
    // Deleted accounts' uids are never handed out again, on the new tables either.
    let above: i64 = source
        .meta_get("uid_high_water")?
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut nodes = db::open_nodes(&target).map_err(AdminError::Db)?;
    let accounts = users.iter().filter(|u| u.replaced_at.is_none()).count() as i64;
    let capacity = capacity.unwrap_or_else(|| (accounts * 2).max(100));
    match nodes.add_node(&node, capacity) {
        Ok(()) | Err(NodesError::Exists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let copied = nodes.import_users(&node, &users, above)?;
    let listed = nodes.nodes()?;
    let on_node = listed.iter().find(|n| n.url == node).map_or(0, |n| n.users);
    let mut lines = format!(
        "[tokenserver]\nbackend = tokenserver.assignment.sqlnode.SQLNodeAssignment\nsqluri = {target}"
    );
    if lines.contains("***") {
        lines.push_str("\n\nPut the database password in place of *** (it is never printed).");
    }
    Ok(said(
        as_json,
        json!({"node": node, "user_rows": users.len(), "copied": copied, "accounts_on_node": on_node, "ini": lines}),
        format!(
            "{copied} of {} user row(s) copied ({} were there already); node {node} holds {on_node} account(s).\nPut these lines in the ini (with [syncserver] secret set), then restart:\n\n{lines}",
            users.len(),
            users.len() as u64 - copied
        ),
    ))
}

/// For `nodes set`: parses `0|1|yes|no|true|false`.
pub fn flag(name: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(format!("{name} wants 1 or 0, not {v:?}")),
    }
}
