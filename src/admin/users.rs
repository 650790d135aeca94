//! `users list` and `users delete`.

use std::io::{BufRead, Write};

use serde_json::json;

use super::purge::PurgeOptions;
use super::{format_ms, open, table, AdminError};
use crate::config::Settings;
use crate::db::admin::UserSummary;

/// Lists every user row with its usage.
pub fn list_users(settings: &Settings, as_json: bool) -> Result<String, AdminError> {
    let users = open(settings, false)?.list_users()?;
    if as_json {
        let list: Vec<_> = users
            .iter()
            .map(|u| {
                json!({
                    "uid": u.uid, "account": u.email, "created_at": u.created_at,
                    "replaced_at": u.replaced_at, "records": u.records, "bytes": u.bytes,
                })
            })
            .collect();
        return Ok(serde_json::Value::from(list).to_string());
    }
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.uid.to_string(),
                u.email.clone(),
                format_ms(u.created_at),
                u.replaced_at.map(format_ms).unwrap_or_else(|| "-".into()),
                u.records.to_string(),
                u.bytes.to_string(),
            ]
        })
        .collect();
    Ok(table::render(
        &[
            "uid",
            "account",
            "created (UTC)",
            "replaced (UTC)",
            "records",
            "bytes",
        ],
        &rows,
        &[0, 4, 5],
    ))
}

/// The stored emails an argument names: a uid, a full stored email, or an
/// account uid (the part before `@`).
fn matching(users: &[UserSummary], target: &str) -> Vec<String> {
    let mut emails: Vec<String> = users
        .iter()
        .filter(|u| {
            u.uid.to_string() == target
                || u.email.eq_ignore_ascii_case(target)
                || u.email
                    .split('@')
                    .next()
                    .is_some_and(|a| a.eq_ignore_ascii_case(target))
        })
        .map(|u| u.email.clone())
        .collect();
    emails.sort();
    emails.dedup();
    emails
}

/// Deletes an account (rows and data) after a confirmation, unless `yes`.
pub fn delete_user(
    settings: &Settings,
    target: &str,
    yes: bool,
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
) -> Result<String, AdminError> {
    let mut db = open(settings, true)?;
    let users = db.list_users()?;
    let emails = matching(&users, target);
    let email = match emails.as_slice() {
        [] => {
            return Err(AdminError::Refused(format!(
                "no account matches {target:?} (see `users list`)"
            )))
        }
        [one] => one.clone(),
        many => {
            return Err(AdminError::Refused(format!(
                "{target:?} matches several accounts ({}); name one by its full account",
                many.join(", ")
            )))
        }
    };
    let rows: Vec<&UserSummary> = users.iter().filter(|u| u.email == email).collect();
    // The prompt and the result count the same thing: every stored record,
    // expired ones not purged yet included (they go too).
    let expired: i64 = rows.iter().map(|u| u.expired_records).sum();
    let records: i64 = rows.iter().map(|u| u.records).sum::<i64>() + expired;
    let bytes: i64 = rows.iter().map(|u| u.bytes + u.expired_bytes).sum();
    let uids: Vec<String> = rows.iter().map(|u| u.uid.to_string()).collect();
    if !yes {
        let expired = match expired {
            0 => "none expired".to_string(),
            n => format!("of which {n} expired"),
        };
        let _ = write!(
            prompt,
            "Delete account {email} (uid {}; {}, {expired}, {})? This cannot be undone. [y/N] ",
            uids.join(", "),
            count(records, "record"),
            count(bytes, "byte"),
        );
        let _ = prompt.flush();
        let mut answer = String::new();
        let _ = input.read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(AdminError::Refused("not deleted".into()));
        }
    }
    // One transaction removes the rows and queues the uids; the data then goes
    // in chunks. If this is interrupted, `purge` finishes the job.
    let removed = db.remove_account(&email)?;
    let opts = PurgeOptions::default();
    let mut gone = 0;
    for uid in removed {
        match super::purge::empty_uid(&mut *db, uid, &opts) {
            Ok(p) => gone += p.records,
            // The account is gone already; say so, or a retry would report
            // "no account matches" and leave the operator guessing.
            Err(e) => {
                return Err(AdminError::DataLeft {
                    email,
                    cause: Box::new(e),
                })
            }
        }
    }
    Ok(format!(
        "deleted account {email} (uid {}): {} removed (expired ones included)",
        uids.join(", "),
        count(gone as i64, "record")
    ))
}

/// `1 record`, `2 records`.
fn count(n: i64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(uid: i64, email: &str) -> UserSummary {
        UserSummary {
            uid,
            email: email.into(),
            created_at: 0,
            replaced_at: None,
            records: 0,
            bytes: 0,
            expired_records: 0,
            expired_bytes: 0,
        }
    }

    #[test]
    fn counts() {
        assert_eq!(count(0, "record"), "0 records");
        assert_eq!(count(1, "record"), "1 record");
        assert_eq!(count(6, "byte"), "6 bytes");
    }

    #[test]
    fn targets() {
        let users = [
            u(1, "abc@api.accounts.firefox.com"),
            u(2, "abc@api.accounts.firefox.com"),
            u(3, "def@x"),
        ];
        assert_eq!(matching(&users, "2"), vec!["abc@api.accounts.firefox.com"]);
        assert_eq!(
            matching(&users, "abc"),
            vec!["abc@api.accounts.firefox.com"]
        );
        assert_eq!(matching(&users, "DEF@x"), vec!["def@x"]);
        assert!(matching(&users, "nobody").is_empty());
    }
}
