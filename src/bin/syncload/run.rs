//! The commands: a load run, the report over saved runs, the start-up probe, the JWK set.

use std::process::{Command, ExitCode, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::client::{creds_from_token_reply, mint_creds, now_secs, Client, Creds, Req};
use crate::evloop;
use crate::jwt::{key_id, Signer};
use crate::stats::{Report, RunResult, Sample};
use crate::svg::chart;
use crate::workload::{discover_pages, seed_account, Account, Shared, Worker, Workload};
use crate::Options;

fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn signer(o: &Options) -> Result<Option<Signer>, String> {
    o.jwt_key
        .as_ref()
        .map(|p| Signer::load(p, &o.jwt_kid).map_err(|e| e.to_string()))
        .transpose()
}

/// Storage credentials of account `n`: from the token server when one is given with a JWT key,
/// else minted from the secret.
fn creds_for(
    o: &Options,
    signer: Option<&Signer>,
    client: &Client,
    n: u64,
) -> Result<Creds, String> {
    if let (Some(ts), Some(s)) = (o.token_server.as_deref(), signer) {
        let jwt = s
            .access_token(n, now_secs() as i64)
            .map_err(|e| e.to_string())?;
        let r = client
            .token(ts, &jwt, &key_id(n))
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            let text = String::from_utf8_lossy(&r.body);
            return Err(format!("token server: {} {text}", r.status));
        }
        return creds_from_token_reply(&r.body).map_err(|e| e.to_string());
    }
    let secret = o
        .secret
        .as_deref()
        .ok_or("storage workloads need --secret (or --token-server with --jwt-key)")?;
    let node = o.node.as_deref().unwrap_or(&o.base_url);
    mint_creds(secret, node, &o.storage_path, n).map_err(|e| e.to_string())
}

fn accounts(o: &Options) -> Result<Vec<Account>, String> {
    let signer = signer(o)?;
    let storage = o.workloads.iter().any(|w| w.needs_storage());
    if o.workloads.contains(&Workload::Token) && signer.is_none() {
        return Err("the token workload needs --jwt-key (see `syncload jwks`)".into());
    }
    let client = Client::new();
    let now = now_secs() as i64;
    (1..=o.users as u64)
        .map(|n| {
            let bearer = match &signer {
                Some(s) => Some((
                    s.access_token(n, now).map_err(|e| e.to_string())?,
                    key_id(n),
                )),
                None => None,
            };
            let creds = if storage {
                Some(creds_for(o, signer.as_ref(), &client, n)?)
            } else {
                None
            };
            Ok(Account::new(creds, bearer))
        })
        .collect()
}

/// Runs `f` over every account on a few threads; the first error wins.
fn for_accounts(
    accts: &mut [Account],
    f: impl Fn(&Client, &mut Account) -> Result<(), String> + Sync,
) -> Result<(), String> {
    let per = accts.len().div_ceil(4).max(1);
    std::thread::scope(|sc| {
        let handles: Vec<_> = accts
            .chunks_mut(per)
            .map(|chunk| {
                let f = &f;
                sc.spawn(move || {
                    let client = Client::new();
                    chunk.iter_mut().try_for_each(|a| f(&client, a))
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err("worker panicked".into())))
    })
}

/// Event loops per run (as wrk -t2): at most one per core of this 2-core machine kind.
const LOOPS: usize = 2;

/// Whether every request of `w` goes to a plain `http://` URL (the event loop's only kind).
fn plain_http(w: Workload, accts: &[Account], shared: &Shared) -> bool {
    match w {
        Workload::Plain => shared.plain_url.starts_with("http://"),
        Workload::Token => shared.token_server.starts_with("http://"),
        _ => accts
            .iter()
            .all(|a| a.creds.as_ref().is_none_or(|c| c.api.scheme == "http")),
    }
}

/// The connections spread over up to [`LOOPS`] epoll loops, each on its own thread.
fn event_loops(
    w: Workload,
    workers: Vec<Worker>,
    shared: &Shared,
    dur: Duration,
) -> (Sample, Instant, Instant) {
    let n = workers.len().clamp(1, LOOPS);
    let mut parts: Vec<Vec<Worker>> = (0..n).map(|_| Vec::new()).collect();
    for (i, wk) in workers.into_iter().enumerate() {
        parts[i % n].push(wk);
    }
    let barrier = Barrier::new(n + 1);
    std::thread::scope(|sc| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let barrier = &barrier;
                sc.spawn(move || {
                    let mut s = Sample::default();
                    barrier.wait();
                    let deadline = Instant::now() + dur;
                    if let Err(e) = evloop::run(w, part, shared, deadline, &mut s) {
                        s.transport(format!("event loop: {e}"));
                    }
                    (s, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        collect(handles)
    })
}

/// One thread per connection, each stepping its worker (full-read, session, https).
fn threads(
    w: Workload,
    workers: Vec<Worker>,
    shared: &Shared,
    dur: Duration,
) -> (Sample, Instant, Instant) {
    let barrier = Barrier::new(workers.len() + 1);
    std::thread::scope(|sc| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let barrier = &barrier;
                sc.spawn(move || {
                    let mut s = Sample::default();
                    barrier.wait();
                    let deadline = Instant::now() + dur;
                    while Instant::now() < deadline {
                        worker.step(w, shared, &mut s);
                    }
                    (s, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        collect(handles)
    })
}

/// Joins the client threads (released from the barrier just before): their merged sample,
/// the start and the last end.
fn collect(
    handles: Vec<std::thread::ScopedJoinHandle<'_, (Sample, Instant)>>,
) -> (Sample, Instant, Instant) {
    let start = Instant::now();
    let mut all = Sample::default();
    let mut end = start;
    for h in handles {
        match h.join() {
            Ok((s, e)) => {
                all.merge(s);
                end = end.max(e);
            }
            Err(_) => all.transport("client thread panicked".into()),
        }
    }
    (all, start, end)
}

fn run_one(w: Workload, c: usize, o: &Options, accts: &[Account], shared: &Shared) -> RunResult {
    let groups: Vec<Vec<Account>> = (0..c)
        .map(|t| {
            let mine: Vec<Account> = accts
                .iter()
                .enumerate()
                .filter(|(u, _)| u % c == t)
                .map(|(_, a)| a.clone())
                .collect();
            if mine.is_empty() {
                accts
                    .get(t % accts.len().max(1))
                    .cloned()
                    .into_iter()
                    .collect()
            } else {
                mine
            }
        })
        .collect();
    let dur = Duration::from_secs_f64(o.duration.max(0.01));
    let workers: Vec<Worker> = groups
        .into_iter()
        .enumerate()
        .map(|(t, g)| Worker::new(g, 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1)))
        .collect();
    let (sample, start, end) = if w.single() && plain_http(w, accts, shared) {
        event_loops(w, workers, shared, dur)
    } else {
        threads(w, workers, shared, dur)
    };
    RunResult::from_sample(w.name(), c, end.duration_since(start), sample)
}

fn describe(r: &RunResult) -> String {
    let l = &r.latency_ms;
    let mut line = format!(
        "{:<10} c={:<3} {:>9.1} req/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.1} ms",
        r.workload, r.concurrency, r.throughput, l.p50, l.p90, l.p99, l.max
    );
    if r.error_count() > 0 {
        line.push_str(&format!(
            "  ERRORS {:?} transport {}",
            r.errors, r.transport_errors
        ));
        if let Some(m) = r.transport_messages.first() {
            line.push_str(&format!(" ({m})"));
        }
    }
    line
}

/// A load run: accounts, optional seeding, then every workload at every concurrency level.
pub fn load(o: &Options) -> Result<ExitCode, String> {
    if o.workloads.is_empty() {
        return Err("no --workload given".into());
    }
    if o.base_url.is_empty() && o.token_server.is_none() {
        return Err("no --base-url given".into());
    }
    let started = now_secs() as u64;
    let mut accts = accounts(o)?;
    if o.seed {
        let t0 = Instant::now();
        let records = o.records;
        for_accounts(&mut accts, |c, a| match &a.creds {
            Some(cr) => seed_account(c, cr, records, o.seed_extra, cr.uid),
            None => Ok(()),
        })?;
        eprintln!(
            "seeded {} users × {records} records in {:.1} s",
            accts.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    if o.workloads.contains(&Workload::ReadPage) {
        for_accounts(&mut accts, |c, a| {
            if let Some(cr) = &a.creds {
                a.pages = discover_pages(c, cr, &o.sorts)?;
            }
            Ok(())
        })?;
        let fewest = accts.iter().map(|a| a.pages.len()).min().unwrap_or(0);
        if fewest < 2 * o.sorts.len() {
            eprintln!("warning: some users have under two pages of history; run with --seed");
        }
    }
    let shared = Shared {
        plain_url: o.base_url.clone(),
        token_server: o
            .token_server
            .clone()
            .unwrap_or_else(|| format!("{}/token", o.base_url)),
    };
    let mut report = Report {
        target: o.base_url.clone(),
        label: o.label.clone(),
        started,
        results: Vec::new(),
        setup_requests: accts.iter().map(|a| a.pages.len() as u64).sum(),
    };
    for w in &o.workloads {
        for c in &o.concurrency {
            let r = run_one(*w, *c, o, &accts, &shared);
            println!("{}", describe(&r));
            report.results.push(r);
        }
    }
    if let Some(p) = &o.json_out {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        write(p, &text)?;
    }
    if let Some(p) = &o.svg_out {
        write(p, &chart(&[report]))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn read_report(p: &std::path::Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// The markdown table (and chart) of saved runs, as ratios to the ceiling run.
pub fn report(o: &Options) -> Result<ExitCode, String> {
    let ceiling = o.ceiling.as_deref().map(read_report).transpose()?;
    let mut reports: Vec<Report> = ceiling.iter().cloned().collect();
    for f in &o.files {
        reports.push(read_report(f)?);
    }
    let plain = |c: usize| -> Option<f64> {
        let runs = ceiling
            .as_ref()?
            .results
            .iter()
            .filter(|r| r.workload == "plain");
        let runs: Vec<&RunResult> = runs.collect();
        runs.iter()
            .find(|r| r.concurrency == c)
            .or_else(|| {
                runs.iter()
                    .max_by(|a, b| a.throughput.total_cmp(&b.throughput))
            })
            .map(|r| r.throughput)
    };
    println!("| run | workload | conc. | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | vs ceiling |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|---:|");
    for rep in &reports {
        for r in &rep.results {
            let l = &r.latency_ms;
            let mut errs: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            if r.transport_errors > 0 {
                errs.push(format!("transport×{}", r.transport_errors));
            }
            let ratio = plain(r.concurrency)
                .filter(|p| *p > 0.0)
                .map_or("".to_string(), |p| {
                    format!("{:.0}%", 100.0 * r.throughput / p)
                });
            println!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {ratio} |",
                rep.label,
                r.workload,
                r.concurrency,
                r.throughput,
                l.p50,
                l.p90,
                l.p99,
                l.max,
                if errs.is_empty() {
                    "0".into()
                } else {
                    errs.join(", ")
                }
            );
        }
    }
    if let Some(p) = &o.svg_out {
        write(p, &chart(&reports))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Starts the command `--runs` times; exec to first 200 and RSS at that moment, as JSON.
pub fn startup(o: &Options) -> Result<ExitCode, String> {
    let (prog, args) = o.command.split_first().ok_or("startup needs -- COMMAND")?;
    let creds = match &o.secret {
        Some(_) => Some(creds_for(o, None, &Client::new(), 1)?),
        None => None,
    };
    let (mut times, mut rss) = (Vec::new(), Vec::new());
    for _ in 0..o.runs {
        let client = Client::new();
        let t0 = Instant::now();
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{prog}: {e}"))?;
        let mut took = None;
        while t0.elapsed() < Duration::from_secs(10) {
            let r = match &creds {
                Some(cr) => client.signed(cr, "GET", "/info/collections", &[], b""),
                None => client.send(&Req {
                    method: "GET",
                    url: &o.base_url,
                    headers: &[],
                    body: b"",
                }),
            };
            if matches!(r, Ok(ref r) if r.status == 200) {
                took = Some(t0.elapsed());
                rss.push(rss_kb(child.id()).unwrap_or(0) as f64);
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("{prog} exited early: {st}"));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: signalling our own child by pid; no memory is touched.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = child.wait();
        let took = took.ok_or("no 200 within 10 s")?;
        times.push(took.as_secs_f64() * 1000.0);
    }
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let min = times.iter().copied().fold(f64::MAX, f64::min);
    let out = serde_json::json!({
        "runs": o.runs,
        "first_response_ms": {"median": median(&mut times.clone()), "min": min, "max": max(&times)},
        "rss_kb": {"median": median(&mut rss.clone()), "max": max(&rss)},
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Prints the JWK set for `[oauth] jwks` that accepts this tool's access tokens.
pub fn jwks(o: &Options) -> Result<ExitCode, String> {
    let s = signer(o)?.ok_or("jwks needs --jwt-key")?;
    println!("{}", s.jwks());
    Ok(ExitCode::SUCCESS)
}
