//! `syncload`: a load generator that acts as many Firefox Sync 1.5 clients against any Sync
//! server (this one, Mozilla's Python syncserver, syncstorage-rs), with tokens minted from the
//! shared secret or fetched from a token server, and every request Hawk-signed with a fresh
//! nonce. See BENCHMARKS.md and bench/run.sh.

mod client;
mod evloop;
mod http;
mod jwt;
mod run;
mod stats;
mod svg;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use workload::{SeedExtra, Workload};

const USAGE: &str = "\
Usage:
  syncload --base-url URL [--secret S] [--node URL] [--storage-path PATH]
           [--token-server URL] [--jwt-key FILE.pk8 --jwt-kid KID]
           --workload W[,W...] [--concurrency N[,N...]] [--duration SECS]
           [--users N] [--records N] [--seed] [--expiring N] [--collections N]
           [--sort S[,S...]] [--label L]
           [--json-out FILE] [--svg-out FILE]
  syncload report [--ceiling FILE.json] [--svg-out FILE] FILE.json...
  syncload startup --base-url URL [--secret S ...] [--runs N] -- COMMAND [ARGS...]
  syncload jwks --jwt-key FILE.pk8 --jwt-kid KID

Workloads: plain (unauthenticated GET of --base-url: the hello-world ceiling), info,
read-page, full-read, batch, put, session, token (or `all` for every storage one + token).
--concurrency counts keep-alive connections: plain, info, read-page, batch, put and token
run them all on two epoll loops; full-read, session and https:// targets use a thread each.

Storage credentials: minted from --secret for uids 1..=users, naming --node (default
--base-url; must equal the target's public URL) with storage under --storage-path (default
/storage/1.5; /1.5 for syncstorage-rs). With --token-server (the token server root, e.g.
URL/token) and --jwt-key they are fetched from the token server instead. The token workload
asks --token-server (default --base-url + /token) with JWTs signed by --jwt-key; configure
the server with the output of `syncload jwks`.

--seed first fills every user's history collection with --records (default 1000) ~1 KB
records, plus meta/global, crypto/keys, clients, bookmarks and tabs; with --expiring N also
N records per user in bench-expiring with ttl 1 s (expired a second later, for `purge`), and
with --collections N one ~1 KB record in each of N collections bench-c0000… per user.
--sort limits read-page to some of the orders index, newest, oldest (default all three), so
that one order's cost can be measured on its own.

report: prints a markdown table of the runs, each also as a ratio to the plain run of the
--ceiling file at the same concurrency, and optionally writes the combined chart.
startup: starts COMMAND --runs times (default 5), measures exec to the first 200 from
--base-url (signed info/collections of uid 1 when --secret is given) and the command's RSS
at that moment; prints JSON.";

/// Options of a load run.
#[derive(Debug, Clone)]
pub struct Options {
    base_url: String,
    secret: Option<String>,
    node: Option<String>,
    storage_path: String,
    token_server: Option<String>,
    jwt_key: Option<PathBuf>,
    jwt_kid: String,
    workloads: Vec<Workload>,
    concurrency: Vec<usize>,
    duration: f64,
    users: usize,
    records: usize,
    seed: bool,
    seed_extra: SeedExtra,
    sorts: Vec<&'static str>,
    label: String,
    json_out: Option<PathBuf>,
    svg_out: Option<PathBuf>,
    runs: usize,
    ceiling: Option<PathBuf>,
    files: Vec<PathBuf>,
    command: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            base_url: String::new(),
            secret: None,
            node: None,
            storage_path: "/storage/1.5".into(),
            token_server: None,
            jwt_key: None,
            jwt_kid: "syncload".into(),
            workloads: Vec::new(),
            concurrency: vec![1, 4, 16],
            duration: 5.0,
            users: 16,
            records: 1000,
            seed: false,
            seed_extra: SeedExtra::default(),
            sorts: workload::SORTS.to_vec(),
            label: "syncload".into(),
            json_out: None,
            svg_out: None,
            runs: 5,
            ceiling: None,
            files: Vec::new(),
            command: Vec::new(),
        }
    }
}

fn list<T: std::str::FromStr>(flag: &str, v: &str) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| format!("{flag}: bad value {x:?}"))
        })
        .collect()
}

fn workloads(v: &str) -> Result<Vec<Workload>, String> {
    if v == "all" {
        return Ok(workload::ALL
            .into_iter()
            .filter(|w| *w != Workload::Plain)
            .collect());
    }
    v.split(',')
        .map(|x| Workload::parse(x.trim()).ok_or_else(|| format!("unknown workload {x:?}")))
        .collect()
}

fn sorts(v: &str) -> Result<Vec<&'static str>, String> {
    v.split(',')
        .map(|x| {
            let x = x.trim();
            workload::SORTS
                .into_iter()
                .find(|s| *s == x)
                .ok_or_else(|| format!("--sort: unknown order {x:?}"))
        })
        .collect()
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            o.command = it.by_ref().cloned().collect();
            break;
        }
        let flag = a.as_str();
        if flag == "--seed" {
            o.seed = true;
            continue;
        }
        if !flag.starts_with("--") {
            o.files.push(PathBuf::from(flag));
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag {
            "--base-url" => o.base_url = v.trim_end_matches('/').to_string(),
            "--secret" => o.secret = Some(v.clone()),
            "--node" => o.node = Some(v.clone()),
            "--storage-path" => o.storage_path = v.clone(),
            "--token-server" => o.token_server = Some(v.trim_end_matches('/').to_string()),
            "--jwt-key" => o.jwt_key = Some(PathBuf::from(v)),
            "--jwt-kid" => o.jwt_kid = v.clone(),
            "--workload" => o.workloads = workloads(v)?,
            "--concurrency" => o.concurrency = list(flag, v)?,
            "--duration" => {
                o.duration = v
                    .parse()
                    .map_err(|_| format!("{flag}: not a number: {v}"))?
            }
            "--users" => o.users = num(v)?.max(1),
            "--records" => o.records = num(v)?,
            "--expiring" => o.seed_extra.expiring = num(v)?,
            "--collections" => o.seed_extra.collections = num(v)?,
            "--sort" => o.sorts = sorts(v)?,
            "--label" => o.label = v.clone(),
            "--json-out" => o.json_out = Some(PathBuf::from(v)),
            "--svg-out" => o.svg_out = Some(PathBuf::from(v)),
            "--runs" => o.runs = num(v)?.max(1),
            "--ceiling" => o.ceiling = Some(PathBuf::from(v)),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.concurrency.contains(&0) {
        return Err("--concurrency: levels must be at least 1".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (cmd, rest) = match args.first().map(String::as_str) {
        Some(c @ ("report" | "startup" | "jwks")) => (c, args.get(1..).unwrap_or_default()),
        _ => ("load", args.as_slice()),
    };
    let opts = match parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("syncload: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let res = match cmd {
        "report" => run::report(&opts),
        "startup" => run::startup(&opts),
        "jwks" => run::jwks(&opts),
        _ => run::load(&opts),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("syncload: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_lists_and_flags() {
        let o = parse(&args(
            "--base-url http://h:1/ --workload info,batch --concurrency 1,4 --seed",
        ))
        .unwrap();
        assert_eq!(o.base_url, "http://h:1");
        assert_eq!(o.workloads, vec![Workload::Info, Workload::Batch]);
        assert_eq!(o.concurrency, vec![1, 4]);
        assert!(o.seed);
        assert!(parse(&args("--workload nope")).is_err());
        assert!(parse(&args("--concurrency 0")).is_err());
        assert!(parse(&args("--users")).is_err());
        assert!(parse(&args("--sort sideways")).is_err());
        assert_eq!(parse(&args("--sort index")).unwrap().sorts, vec!["index"]);
        let o = parse(&args("--seed --expiring 100 --collections 10")).unwrap();
        assert_eq!(
            o.seed_extra,
            SeedExtra {
                expiring: 100,
                collections: 10
            }
        );
        let o = parse(&args("--runs 3 -- /bin/x --flag")).unwrap();
        assert_eq!(o.command, vec!["/bin/x", "--flag"]);
        assert!(!parse(&args("--workload all"))
            .unwrap()
            .workloads
            .contains(&Workload::Plain));
    }
}
