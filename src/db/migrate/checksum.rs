//! What a uid's records come to on either side ([`Checksum`]), and what its source
//! state is in short ([`fingerprint`]).

use ring::digest::{Context, SHA256};

use super::{BsoRow, UserRow};

/// A user's records, summed up whatever order they are read in: each row's
/// digest (collection, id, modified, sortindex, ttl, payload, payload_size) is
/// kept, and the rows are ordered by (collection, id bytes) in Rust before the
/// final digest, because the engines order text differently (MySQL's latin1
/// collation ignores case).
#[derive(Debug, Default)]
pub struct Checksum {
    rows: Vec<(i64, String, [u8; 16])>,
    bytes: i64,
}

/// What a [`Checksum`] comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records.
    pub records: i64,
    /// Their `payload_size` sum.
    pub bytes: i64,
    /// Hex digest over the ordered records.
    pub digest: String,
}

impl Checksum {
    /// Adds one record.
    pub fn add(&mut self, r: &BsoRow) {
        let mut ctx = Context::new(&SHA256);
        for n in [r.collection, r.modified, r.ttl, r.payload_size] {
            ctx.update(&n.to_be_bytes());
        }
        match r.sortindex {
            Some(s) => {
                ctx.update(&[1]);
                ctx.update(&s.to_be_bytes());
            }
            None => ctx.update(&[0]),
        }
        for text in [&r.id, &r.payload] {
            ctx.update(&(text.len() as u64).to_be_bytes());
            ctx.update(text.as_bytes());
        }
        let mut short = [0u8; 16];
        short.copy_from_slice(&ctx.finish().as_ref()[..16]);
        self.rows.push((r.collection, r.id.clone(), short));
        self.bytes += r.payload_size;
    }

    /// The count, bytes and digest.
    pub fn finish(mut self) -> Summary {
        self.rows
            .sort_unstable_by(|a, b| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes())));
        let mut ctx = Context::new(&SHA256);
        for (_, _, row) in &self.rows {
            ctx.update(row);
        }
        Summary {
            records: self.rows.len() as i64,
            bytes: self.bytes,
            digest: hex(&ctx.finish().as_ref()[..16]),
        }
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a uid's source state is, in short: a change to its `users` row, its
/// collections or its records changes it (every write moves a collection's
/// timestamp or the record count).
pub(super) fn fingerprint(
    user: Option<&UserRow>,
    collections: (i64, Option<i64>),
    records: (i64, Option<i64>),
) -> String {
    let text = format!("{user:?}|{collections:?}|{records:?}");
    hex(&ring::digest::digest(&SHA256, text.as_bytes()).as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(collection: i64, id: &str, payload: &str) -> BsoRow {
        BsoRow {
            collection,
            id: id.into(),
            sortindex: None,
            modified: 1000,
            payload: payload.into(),
            payload_size: payload.len() as i64,
            ttl: 2_100_000_000,
        }
    }

    #[test]
    fn checksum_ignores_read_order_not_content() {
        let rows = [row(1, "b", "x"), row(1, "a", "y"), row(2, "a", "zz")];
        let mut one = Checksum::default();
        let mut two = Checksum::default();
        for r in &rows {
            one.add(r);
        }
        for r in rows.iter().rev() {
            two.add(r);
        }
        let (one, two) = (one.finish(), two.finish());
        assert_eq!(one, two);
        assert_eq!((one.records, one.bytes), (3, 4));
        for changed in [
            BsoRow {
                sortindex: Some(0),
                ..row(1, "a", "y")
            },
            BsoRow {
                ttl: 5,
                ..row(1, "a", "y")
            },
            BsoRow {
                modified: 1010,
                ..row(1, "a", "y")
            },
            row(1, "a", "Y"),
            row(3, "a", "y"),
        ] {
            let mut c = Checksum::default();
            for r in [&rows[0], &changed, &rows[2]] {
                c.add(r);
            }
            assert_ne!(c.finish().digest, one.digest, "{changed:?}");
        }
    }

    #[test]
    fn fingerprint_sees_every_kind_of_change() {
        let user = UserRow {
            uid: 1,
            service: "sync-1.5".into(),
            email: "a@b".into(),
            generation: 1,
            client_state: "".into(),
            created_at: 5,
            replaced_at: None,
            keys_changed_at: None,
            node: None,
        };
        let base = fingerprint(Some(&user), (2, Some(10)), (5, Some(10)));
        assert_eq!(base, fingerprint(Some(&user), (2, Some(10)), (5, Some(10))));
        let replaced = UserRow {
            replaced_at: Some(7),
            ..user.clone()
        };
        for other in [
            fingerprint(None, (2, Some(10)), (5, Some(10))),
            fingerprint(Some(&replaced), (2, Some(10)), (5, Some(10))),
            fingerprint(Some(&user), (1, Some(10)), (5, Some(10))),
            fingerprint(Some(&user), (2, Some(20)), (5, Some(10))),
            fingerprint(Some(&user), (2, Some(10)), (4, Some(10))),
        ] {
            assert_ne!(other, base);
        }
    }
}
