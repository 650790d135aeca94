//! The user-record rules: what a token request does to the account's rows.
//!
//! Python's static-node backend semantics with Mozilla's eight consistency
//! rules, except that every check runs before anything is written (Python could
//! persist a generation bump and then refuse the request).

use crate::db::{NewUser, UserPlan, UserState};

/// What the identity provider and the client said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// FxA generation, 0 when unknown.
    pub generation: i64,
    /// Keys-changed-at, 0 when unknown.
    pub keys_changed_at: i64,
    /// Client state (lower-case hex), `""` when none.
    pub client_state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub allow_new_users: bool,
    pub max_users: Option<u64>,
}

/// Why a request is refused; each maps to a 401 status string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NewUsersDisabled,
    InvalidGeneration,
    InvalidKeysChangedAt,
    /// `invalid-client-state`, with the description's tail.
    InvalidClientState(&'static str),
}

/// Decides what to do with the account's rows.
pub fn decide(
    state: &UserState,
    c: &Claims,
    admission: &Admission,
    node: &str,
) -> Result<UserPlan, Refusal> {
    let Some(u) = state.rows.first() else {
        let full = admission
            .max_users
            .is_some_and(|max| state.accounts >= max.min(i64::MAX as u64) as i64);
        if !admission.allow_new_users || full {
            return Err(Refusal::NewUsersDisabled);
        }
        return Ok(UserPlan::Create(NewUser {
            generation: c.generation,
            client_state: c.client_state.clone(),
            keys_changed_at: Some(c.keys_changed_at),
            node: node.to_string(),
        }));
    };
    let (gen, kca) = (c.generation, c.keys_changed_at);
    let stored_kca = u.keys_changed_at.unwrap_or(0);
    // A NULL keys_changed_at (rows from before the column) is older than any value.
    let kca_increases = u.keys_changed_at.is_none_or(|s| kca > s);
    let mut new_gen = u.generation.max(gen);
    let mut new_kca = u.keys_changed_at;
    if kca_increases {
        if gen > 0 && gen < kca {
            return Err(Refusal::InvalidKeysChangedAt);
        }
        if gen == 0 && kca > u.generation {
            new_gen = kca;
        }
        new_kca = Some(kca);
    }
    let client_state_changes = c.client_state != u.client_state;
    if client_state_changes {
        if c.client_state.is_empty() {
            return Err(Refusal::InvalidClientState(
                "Unacceptable client-state value empty string",
            ));
        }
        let stale = state
            .rows
            .iter()
            .skip(1)
            .any(|r| r.client_state == c.client_state && r.client_state != u.client_state);
        if stale {
            return Err(Refusal::InvalidClientState(
                "Unacceptable client-state value stale value",
            ));
        }
        if gen > 0 && gen <= u.generation {
            return Err(Refusal::InvalidClientState(
                "Unacceptable client-state value new value with no generation change",
            ));
        }
        if stored_kca > 0 && !kca_increases {
            return Err(Refusal::InvalidClientState(
                "Unacceptable client-state value new value with no keys_changed_at change",
            ));
        }
    }
    if gen > 0 && u.generation > gen {
        return Err(Refusal::InvalidGeneration);
    }
    if stored_kca > 0 && stored_kca > kca {
        return Err(Refusal::InvalidKeysChangedAt);
    }
    Ok(if client_state_changes {
        UserPlan::Replace(NewUser {
            generation: new_gen,
            client_state: c.client_state.clone(),
            keys_changed_at: new_kca.or(Some(kca)),
            node: node.to_string(),
        })
    } else if new_gen != u.generation || new_kca != u.keys_changed_at {
        UserPlan::Update {
            uid: u.uid,
            generation: new_gen,
            keys_changed_at: new_kca,
        }
    } else {
        UserPlan::Keep
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::UserRecord;

    const OPEN: Admission = Admission {
        allow_new_users: true,
        max_users: None,
    };

    fn row(uid: i64, generation: i64, cs: &str, kca: Option<i64>) -> UserRecord {
        UserRecord {
            uid: crate::uid::Uid::new(uid).unwrap(),
            generation,
            client_state: cs.into(),
            keys_changed_at: kca,
            created_at: uid * 10,
            replaced_at: None,
        }
    }

    fn claims(generation: i64, kca: i64, cs: &str) -> Claims {
        Claims {
            generation,
            keys_changed_at: kca,
            client_state: cs.into(),
        }
    }

    fn run(rows: &[UserRecord], c: Claims) -> Result<UserPlan, Refusal> {
        decide(&UserState { rows, accounts: 0 }, &c, &OPEN, "http://n")
    }

    #[test]
    fn first_sign_in_and_admission() {
        let plan = run(&[], claims(5, 5, "aa")).unwrap();
        assert!(
            matches!(plan, UserPlan::Create(ref n) if n.client_state == "aa" && n.keys_changed_at == Some(5))
        );
        let closed = Admission {
            allow_new_users: false,
            max_users: None,
        };
        assert_eq!(
            decide(
                &UserState {
                    rows: &[],
                    accounts: 0
                },
                &claims(1, 1, "aa"),
                &closed,
                "n"
            ),
            Err(Refusal::NewUsersDisabled)
        );
        let capped = Admission {
            allow_new_users: true,
            max_users: Some(2),
        };
        assert_eq!(
            decide(
                &UserState {
                    rows: &[],
                    accounts: 2
                },
                &claims(1, 1, "aa"),
                &capped,
                "n"
            ),
            Err(Refusal::NewUsersDisabled)
        );
        assert!(decide(
            &UserState {
                rows: &[],
                accounts: 1
            },
            &claims(1, 1, "aa"),
            &capped,
            "n"
        )
        .is_ok());
        // Existing accounts are not counted against the cap.
        assert_eq!(
            decide(
                &UserState {
                    rows: &[row(1, 1, "aa", Some(1))],
                    accounts: 0
                },
                &claims(1, 1, "aa"),
                &capped,
                "n"
            ),
            Ok(UserPlan::Keep)
        );
    }

    #[test]
    fn rule1_kca_newer_than_generation() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(10))], claims(15, 20, "aa")),
            Err(Refusal::InvalidKeysChangedAt)
        );
    }

    #[test]
    fn rule2_empty_client_state() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(10))], claims(10, 10, "")),
            Err(Refusal::InvalidClientState(
                "Unacceptable client-state value empty string"
            ))
        );
    }

    #[test]
    fn rule3_stale_client_state() {
        let rows = [row(2, 20, "bb", Some(20)), row(1, 10, "aa", Some(10))];
        assert_eq!(
            run(&rows, claims(30, 30, "aa")),
            Err(Refusal::InvalidClientState(
                "Unacceptable client-state value stale value"
            ))
        );
    }

    #[test]
    fn rule4_new_client_state_without_generation_change() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(10))], claims(10, 10, "bb")),
            Err(Refusal::InvalidClientState(
                "Unacceptable client-state value new value with no generation change"
            ))
        );
    }

    #[test]
    fn rule5_new_client_state_without_kca_change() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(10))], claims(0, 10, "bb")),
            Err(Refusal::InvalidClientState(
                "Unacceptable client-state value new value with no keys_changed_at change"
            ))
        );
    }

    #[test]
    fn rule6_generation_regression() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(5))], claims(9, 5, "aa")),
            Err(Refusal::InvalidGeneration)
        );
    }

    #[test]
    fn rule7_kca_regression() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(8))], claims(10, 7, "aa")),
            Err(Refusal::InvalidKeysChangedAt)
        );
    }

    #[test]
    fn rule8_missing_kca_once_recorded() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(8))], claims(11, 0, "aa")),
            Err(Refusal::InvalidKeysChangedAt)
        );
    }

    #[test]
    fn key_change_replaces_the_row() {
        let plan = run(&[row(1, 10, "aa", Some(10))], claims(20, 20, "bb")).unwrap();
        assert_eq!(
            plan,
            UserPlan::Replace(NewUser {
                generation: 20,
                client_state: "bb".into(),
                keys_changed_at: Some(20),
                node: "http://n".into()
            })
        );
    }

    #[test]
    fn updates_and_null_kca() {
        assert_eq!(
            run(&[row(1, 10, "aa", Some(10))], claims(12, 10, "aa")),
            Ok(UserPlan::Update {
                uid: crate::uid::Uid::new(1).unwrap(),
                generation: 12,
                keys_changed_at: Some(10)
            })
        );
        // NULL keys_changed_at is older than anything, even 0.
        assert_eq!(
            run(&[row(1, 10, "aa", None)], claims(10, 0, "aa")),
            Ok(UserPlan::Update {
                uid: crate::uid::Uid::new(1).unwrap(),
                generation: 10,
                keys_changed_at: Some(0)
            })
        );
        // A legacy row can take a new client state with only a kca.
        assert!(matches!(
            run(&[row(1, 10, "aa", None)], claims(0, 50, "bb")),
            Ok(UserPlan::Replace(_))
        ));
        assert_eq!(
            run(&[row(1, 10, "aa", Some(10))], claims(10, 10, "aa")),
            Ok(UserPlan::Keep)
        );
    }
}
