//! Query parameters and request headers of the storage API, validated into
//! typed values. Every failure is a [`ParamError`], answered 400 with code 1.

use base64::Engine as _;

use super::bso::valid_id;
use crate::db::{BsoQuery, Offset, Precondition, Sort};
use crate::http::Request;
use crate::timestamp;

/// The most ids one `ids=` may name.
pub const MAX_IDS: usize = 100;

/// A malformed parameter or header (400, Weave code 1); the text is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError(pub String);

fn bad(what: impl Into<String>) -> ParamError {
    ParamError(what.into())
}

/// Reads `X-If-Modified-Since` / `X-If-Unmodified-Since`.
pub fn precondition(req: &Request) -> Result<Precondition, ParamError> {
    let parse = |name: &str| -> Result<Option<i64>, ParamError> {
        match req.header(name) {
            None => Ok(None),
            Some(raw) => std::str::from_utf8(raw)
                .ok()
                .and_then(timestamp::parse)
                .map(Some)
                .ok_or_else(|| bad(format!("invalid {name}"))),
        }
    };
    match (
        parse("x-if-modified-since")?,
        parse("x-if-unmodified-since")?,
    ) {
        (Some(_), Some(_)) => Err(bad("both X-If-Modified-Since and X-If-Unmodified-Since")),
        (Some(v), None) => Ok(Precondition::IfModifiedSince(v)),
        (None, Some(v)) => Ok(Precondition::IfUnmodifiedSince(v)),
        (None, None) => Ok(Precondition::None),
    }
}

/// The last value of each query parameter (repeated ones: the last wins).
pub fn last<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Parses `ids=a,b,c` (ids stripped of surrounding whitespace).
pub fn ids(value: &str) -> Result<Vec<String>, ParamError> {
    let ids: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
    if ids.len() > MAX_IDS {
        return Err(bad(format!("more than {MAX_IDS} ids")));
    }
    if let Some(badid) = ids.iter().find(|id| !valid_id(id)) {
        return Err(bad(format!("invalid id {badid:?}")));
    }
    Ok(ids)
}

/// The listing query of `GET /storage/{collection}`.
pub fn listing(pairs: &[(String, String)]) -> Result<BsoQuery, ParamError> {
    let ts = |name: &str| -> Result<Option<i64>, ParamError> {
        last(pairs, name)
            .map(|v| timestamp::parse(v).ok_or_else(|| bad(format!("invalid {name}"))))
            .transpose()
    };
    let mut q = BsoQuery {
        ids: last(pairs, "ids").map(ids).transpose()?,
        newer: ts("newer")?,
        older: ts("older")?,
        // Presence means full records, whatever the value (`full=0` too).
        full: last(pairs, "full").is_some(),
        ..BsoQuery::default()
    };
    q.sort = match last(pairs, "sort") {
        None | Some("newest") => Sort::Newest,
        Some("oldest") => Sort::Oldest,
        Some("index") => Sort::Index,
        Some(other) => return Err(bad(format!("invalid sort {other:?}"))),
    };
    if let Some(limit) = last(pairs, "limit") {
        let n: u64 = limit
            .parse()
            .map_err(|_| bad(format!("invalid limit {limit:?}")))?;
        q.limit = Some(n);
    }
    if let Some(offset) = last(pairs, "offset") {
        q.offset = Some(parse_offset(offset, &q)?);
    }
    Ok(q)
}

/// Decodes an `X-Weave-Next-Offset` value we handed out.
pub fn parse_offset(s: &str, q: &BsoQuery) -> Result<Offset, ParamError> {
    let invalid = || bad(format!("invalid offset {s:?}"));
    if let Some((bound, skip)) = s.split_once(':') {
        if q.sort == Sort::Index {
            return Err(invalid());
        }
        let bound: i64 = bound.parse().map_err(|_| invalid())?;
        let skip: u64 = skip.parse().map_err(|_| invalid())?;
        if bound < 0 {
            return Err(invalid());
        }
        // A bound outside newer/older cannot come from us.
        let outside = match q.sort {
            Sort::Oldest => {
                q.older.is_some_and(|o| bound >= o) || q.newer.is_some_and(|n| bound < n)
            }
            _ => q.newer.is_some_and(|n| bound <= n) || q.older.is_some_and(|o| bound > o),
        };
        if outside {
            return Err(invalid());
        }
        Ok(Offset::Bound { bound, skip })
    } else {
        s.parse().map(Offset::Rows).map_err(|_| invalid())
    }
}

/// Encodes an offset for `X-Weave-Next-Offset`.
pub fn format_offset(o: Offset) -> String {
    match o {
        Offset::Rows(n) => n.to_string(),
        Offset::Bound { bound, skip } => format!("{bound}:{skip}"),
    }
}

/// What the `batch` and `commit` parameters of a POST ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    None,
    /// `batch=true`: open a new batch (`commit` closes it at once).
    Start {
        /// `commit=true` too.
        commit: bool,
    },
    /// `batch=<id>`: add to an open batch.
    Continue {
        id: i64,
        /// `commit=true` too.
        commit: bool,
    },
}

/// Why the batch parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchParamError {
    /// Malformed value (400, code 1).
    Param(ParamError),
    /// `commit` without `batch` (400, body 0, like an invalid batch).
    CommitWithoutBatch,
}

pub fn batch_mode(pairs: &[(String, String)], enabled: bool) -> Result<BatchMode, BatchParamError> {
    let commit = match last(pairs, "commit") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) => {
            return Err(BatchParamError::Param(bad(format!("invalid commit {v:?}"))));
        }
    };
    let Some(batch) = last(pairs, "batch") else {
        if commit && enabled {
            return Err(BatchParamError::CommitWithoutBatch);
        }
        return Ok(BatchMode::None);
    };
    if batch.eq_ignore_ascii_case("true") {
        // With batches disabled the Python server ignored batch=true (a plain POST).
        return Ok(if enabled {
            BatchMode::Start { commit }
        } else {
            BatchMode::None
        });
    }
    if !enabled {
        return Err(BatchParamError::Param(bad("Batch uploads disabled")));
    }
    let id = parse_batch_id(batch)
        .ok_or_else(|| BatchParamError::Param(bad(format!("invalid batch {batch:?}"))))?;
    Ok(BatchMode::Continue { id, commit })
}

/// A batch id: base64 of its decimal form (what we hand out), or the decimal itself.
pub fn parse_batch_id(s: &str) -> Option<i64> {
    let digits = |t: &str| -> Option<i64> {
        if t.is_empty() || t.len() > 18 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| digits(&t))
        .or_else(|| digits(s))
}

/// Encodes a batch id the way the Python server did.
pub fn format_batch_id(id: i64) -> String {
    base64::engine::general_purpose::STANDARD.encode(id.to_string())
}

/// A declared-size header over its limit (400, code 17) or malformed (code 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclaredSizeError {
    /// Over the limit.
    TooLarge(&'static str),
    /// Not an integer.
    Invalid(&'static str),
}

/// Checks `X-Weave-Records`, `X-Weave-Bytes`, `X-Weave-Total-Records`, `X-Weave-Total-Bytes`.
pub fn declared_sizes(
    req: &Request,
    limits: &[(&'static str, u64); 4],
) -> Result<(), DeclaredSizeError> {
    for (name, limit) in limits {
        if let Some(raw) = req.header(name) {
            let value: u64 = std::str::from_utf8(raw)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or(DeclaredSizeError::Invalid(name))?;
            if value > *limit {
                return Err(DeclaredSizeError::TooLarge(name));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::query_pairs;

    fn req_with(headers: &[(&str, &str)]) -> Request {
        Request {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..Request::default()
        }
    }

    #[test]
    fn preconditions() {
        assert_eq!(precondition(&req_with(&[])).unwrap(), Precondition::None);
        assert_eq!(
            precondition(&req_with(&[("x-if-unmodified-since", "1.001")])).unwrap(),
            Precondition::IfUnmodifiedSince(1010)
        );
        assert!(precondition(&req_with(&[("x-if-modified-since", "-1")])).is_err());
        assert!(precondition(&req_with(&[
            ("x-if-modified-since", "1"),
            ("x-if-unmodified-since", "1")
        ]))
        .is_err());
    }

    #[test]
    fn listing_params() {
        let q = listing(&query_pairs(
            "full=0&limit=10&sort=oldest&newer=1.5&ids=a,%20b",
        ))
        .unwrap();
        assert!(q.full);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.sort, Sort::Oldest);
        assert_eq!(q.newer, Some(1500));
        assert_eq!(q.ids, Some(vec!["a".to_string(), "b".to_string()]));
        assert!(listing(&query_pairs("sort=random")).is_err());
        assert!(listing(&query_pairs("limit=-1")).is_err());
        assert!(listing(&query_pairs("ids=")).is_err());
        let many = (0..101)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(listing(&query_pairs(&format!("ids={many}"))).is_err());
        assert!(
            listing(&query_pairs("limit=5&sort=newest&sort=index"))
                .unwrap()
                .sort
                == Sort::Index
        );
    }

    #[test]
    fn offsets_round_trip_and_reject_garbage() {
        let q = BsoQuery::default();
        let o = Offset::Bound {
            bound: 1795866752480,
            skip: 1,
        };
        assert_eq!(parse_offset(&format_offset(o), &q).unwrap(), o);
        assert_eq!(parse_offset("2", &q).unwrap(), Offset::Rows(2));
        for bad in [
            "",
            "x",
            "1:",
            ":1",
            "-5:1",
            "1:-1",
            "1:2:3",
            "99999999999999999999",
        ] {
            assert!(parse_offset(bad, &q).is_err(), "{bad}");
        }
        let newer = BsoQuery {
            newer: Some(2000),
            ..BsoQuery::default()
        };
        assert!(parse_offset("1000:0", &newer).is_err());
        let index = BsoQuery {
            sort: Sort::Index,
            ..BsoQuery::default()
        };
        assert!(parse_offset("1000:0", &index).is_err());
    }

    #[test]
    fn batch_ids() {
        assert_eq!(format_batch_id(1795866820197), "MTc5NTg2NjgyMDE5Nw==");
        assert_eq!(parse_batch_id("MTc5NTg2NjgyMDE5Nw=="), Some(1795866820197));
        assert_eq!(parse_batch_id("1795866820197"), Some(1795866820197));
        // Valid base64 that decodes to non-digits falls back to decimal (Python: 500).
        assert_eq!(parse_batch_id("1234"), Some(1234));
        assert_eq!(parse_batch_id(""), None);
        assert_eq!(parse_batch_id("abcd"), None);
    }

    #[test]
    fn batch_modes() {
        let m = |q: &str, on: bool| batch_mode(&query_pairs(q), on);
        assert_eq!(m("", true), Ok(BatchMode::None));
        assert_eq!(
            m("batch=TRUE", true),
            Ok(BatchMode::Start { commit: false })
        );
        assert_eq!(
            m("batch=true&commit=true", true),
            Ok(BatchMode::Start { commit: true })
        );
        assert_eq!(
            m("batch=MTIz&commit=true", true),
            Ok(BatchMode::Continue {
                id: 123,
                commit: true
            })
        );
        assert_eq!(
            m("commit=true", true),
            Err(BatchParamError::CommitWithoutBatch)
        );
        assert!(matches!(
            m("batch=true&commit=yes", true),
            Err(BatchParamError::Param(_))
        ));
        assert!(matches!(m("batch=", true), Err(BatchParamError::Param(_))));
        assert_eq!(m("batch=true&commit=true", false), Ok(BatchMode::None));
        assert!(matches!(
            m("batch=MTIz", false),
            Err(BatchParamError::Param(_))
        ));
    }

    #[test]
    fn declared_size_headers() {
        let limits = [
            ("x-weave-records", 100),
            ("x-weave-bytes", 1000),
            ("x-weave-total-records", 1000),
            ("x-weave-total-bytes", 10000),
        ];
        assert_eq!(
            declared_sizes(&req_with(&[("x-weave-records", "100")]), &limits),
            Ok(())
        );
        assert_eq!(
            declared_sizes(&req_with(&[("x-weave-records", "101")]), &limits),
            Err(DeclaredSizeError::TooLarge("x-weave-records"))
        );
        assert_eq!(
            declared_sizes(&req_with(&[("x-weave-bytes", "ten")]), &limits),
            Err(DeclaredSizeError::Invalid("x-weave-bytes"))
        );
    }
}
