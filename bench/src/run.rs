//! Scenarios and the load loop: closed loop (each task sends its next request when the previous
//! one returns) or open loop (`--rate`: requests are due on a fixed schedule and latency counts
//! from when a request was due, so a slow server is not hidden by the bench slowing down).

use crate::ops::{Conn, OpError, Target, Targets};
use crate::progress::{Progress, Total};
use crate::stats::Stats;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::Mutex;

/// Objects per Object Group among the preloaded keys: a Locate by group returns this many.
pub(crate) const GROUP_SIZE: usize = 10;
/// Preloaded keys sharing one value of the custom attribute `x-bench-bucket`: what a
/// `locate-attr` filter matches, among every other preloaded key of the same algorithm and length.
pub(crate) const BUCKET_SIZE: usize = 100;

/// What `echo` Gets: the echo server answers every request alike.
const ECHO_UID: &str = "00000000-0000-4000-8000-000000000000";
/// Preloaded keys when a scenario needs some and `--preload` is not given.
pub(crate) const DEFAULT_PRELOAD: usize = 100;
/// Parallel requests while preloading, unless `--preload-concurrency` says otherwise: enough to
/// keep a server busy without flooding it.
pub(crate) const DEFAULT_PRELOAD_CONCURRENCY: usize = 8;
/// How long idle connections are held after the last one opened, before RSS is read again:
/// lets the server settle its per-connection buffers.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    RdlBoot,
    Health,
    Lifecycle,
    Get,
    Locate,
    /// Locate by Cryptographic Algorithm, Cryptographic Length and one value of the custom
    /// attribute `x-bench-bucket`: [`BUCKET_SIZE`] hits among every preloaded key.
    LocateAttr,
    Mixed,
    Idle,
    TlsHandshake,
    /// Get on persistent connections, as `get` does, against `tls-echo-server --echo`.
    Echo,
}

impl Scenario {
    fn needs_preload(self) -> bool {
        matches!(
            self,
            Scenario::RdlBoot
                | Scenario::Health
                | Scenario::Get
                | Scenario::Locate
                | Scenario::LocateAttr
                | Scenario::Mixed
        )
    }

    /// Scenarios that open a connection per request instead of reusing `--connections`.
    fn connects_per_request(self) -> bool {
        matches!(
            self,
            Scenario::RdlBoot | Scenario::Health | Scenario::TlsHandshake
        )
    }
}

#[derive(Debug, Error)]
pub(crate) enum RunError {
    #[error("preload against {addr}: {source}")]
    Preload { addr: String, source: OpError },
    #[error("open connection to {addr}: {source}")]
    Connect { addr: String, source: OpError },
    #[error("invalid --mix '{0}': expected OP=WEIGHT,… with OP in get, locate, create")]
    Mix(String),
    #[error("read {path}: {problem}")]
    Rss { path: String, problem: String },
    #[error("fixture file {path}: {problem}")]
    Fixture { path: String, problem: String },
}

/// When a round ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    Duration(Duration),
    Count(u64),
}

/// Weights of the `mixed` scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mix {
    pub get: u32,
    pub locate: u32,
    pub create: u32,
}

impl Mix {
    pub(crate) fn parse(s: &str) -> Result<Mix, RunError> {
        let mut mix = Mix {
            get: 0,
            locate: 0,
            create: 0,
        };
        for part in s.split(',') {
            let (op, w) = part
                .split_once('=')
                .ok_or_else(|| RunError::Mix(s.into()))?;
            let w: u32 = w.trim().parse().map_err(|_| RunError::Mix(s.into()))?;
            match op.trim() {
                "get" => mix.get = w,
                "locate" => mix.locate = w,
                "create" => mix.create = w,
                _ => return Err(RunError::Mix(s.into())),
            }
        }
        if mix
            .get
            .saturating_add(mix.locate)
            .saturating_add(mix.create)
            == 0
        {
            return Err(RunError::Mix(s.into()));
        }
        Ok(mix)
    }

    fn total(&self) -> u64 {
        u64::from(self.get) + u64::from(self.locate) + u64::from(self.create)
    }
}

/// What a round does.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub scenario: Scenario,
    pub connections: usize,
    pub concurrency: usize,
    pub limit: Limit,
    pub rate: Option<f64>,
    pub mix: Mix,
    pub server_pid: Option<u32>,
    /// Draw progress bars (stderr is a terminal and no `--quiet`).
    pub progress: bool,
    /// Parallel requests while preloading.
    pub preload_concurrency: usize,
}

/// Keys created before measuring, so reads have something to read.
pub(crate) struct Fixture {
    pub uids: Vec<String>,
    pub names: Vec<String>,
    pub groups: Vec<String>,
    /// Prefix of every name and group this run creates, unique per invocation.
    pub tag: String,
    /// Whether the keys carry `x-bench-bucket`: only a `locate-attr` preload sets it, because
    /// some servers (PyKMIP) refuse custom attributes.
    pub buckets: bool,
}

impl Fixture {
    /// The fixture of keys `tag-k0`, `tag-k1`, … whose identifiers are `uids`: names, groups
    /// and buckets follow from the tag and the position.
    fn new(tag: String, uids: Vec<String>, buckets: bool) -> Fixture {
        let count = uids.len();
        Fixture {
            names: (0..count).map(|i| format!("{tag}-k{i}")).collect(),
            groups: (0..count.div_ceil(GROUP_SIZE))
                .map(|g| format!("{tag}-g{g}"))
                .collect(),
            uids,
            tag,
            buckets,
        }
    }

    /// The `x-bench-bucket` value of the preloaded key at `i`.
    pub(crate) fn bucket(&self, i: usize) -> String {
        bucket_of(&self.tag, i)
    }

    /// Preloaded keys in the bucket of the key at `i`.
    pub(crate) fn bucket_len(&self, i: usize) -> usize {
        let start = i / BUCKET_SIZE * BUCKET_SIZE;
        self.uids.len().saturating_sub(start).min(BUCKET_SIZE)
    }

    /// Writes the tag and the identifiers, so that later runs (`--fixture-load`) measure the
    /// same keys without preloading them again.
    pub(crate) fn save(&self, path: &std::path::Path) -> Result<(), RunError> {
        let text =
            serde_json::json!({ "tag": self.tag, "uids": self.uids, "buckets": self.buckets })
                .to_string();
        std::fs::write(path, text).map_err(|e| RunError::Fixture {
            path: path.display().to_string(),
            problem: e.to_string(),
        })
    }

    pub(crate) fn load(path: &std::path::Path) -> Result<Fixture, RunError> {
        let bad = |problem: String| RunError::Fixture {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let saved: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let tag = saved["tag"]
            .as_str()
            .ok_or_else(|| bad("no \"tag\"".into()))?
            .to_owned();
        let uids: Vec<String> = saved["uids"]
            .as_array()
            .ok_or_else(|| bad("no \"uids\"".into()))?
            .iter()
            .map(|u| u.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("an identifier is not a string".into()))?;
        if uids.is_empty() {
            return Err(bad("no keys".into()));
        }
        let buckets = saved["buckets"].as_bool().unwrap_or(false);
        Ok(Fixture::new(tag, uids, buckets))
    }
}

fn bucket_of(tag: &str, i: usize) -> String {
    format!("{tag}-b{}", i / BUCKET_SIZE)
}

/// Creates `count` named keys in groups of [`GROUP_SIZE`] (none if the scenario reads nothing).
pub(crate) async fn preload(
    target: &Target,
    spec: &Spec,
    count: usize,
) -> Result<Fixture, RunError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Names must be unique per server (a compare run against one server preloads it twice).
    static PRELOADS: AtomicU64 = AtomicU64::new(0);
    let seq = PRELOADS.fetch_add(1, Ordering::Relaxed);
    let tag = format!("bench-{}-{secs}-{seq}", std::process::id());
    let count = if spec.scenario.needs_preload() {
        count
    } else {
        0
    };
    let names: Vec<String> = (0..count).map(|i| format!("{tag}-k{i}")).collect();
    let groups: Vec<String> = (0..count.div_ceil(GROUP_SIZE))
        .map(|g| format!("{tag}-g{g}"))
        .collect();
    let names = Arc::new(names);
    let groups = Arc::new(groups);
    let next = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(
        spec.progress && count > 0,
        &format!("preload {}", target.addr),
        Total::Items(count as u64),
    );
    let mut tasks = Vec::new();
    for _ in 0..spec.preload_concurrency.max(1).min(count) {
        let buckets = spec.scenario == Scenario::LocateAttr;
        let (target, names, groups, next, done, tag) = (
            target.clone(),
            names.clone(),
            groups.clone(),
            next.clone(),
            progress.counter(),
            tag.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&target).await?;
            let mut made = Vec::new();
            loop {
                let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(usize::MAX);
                let Some(name) = names.get(i) else { break };
                let uid = conn
                    .create(
                        Some(name),
                        groups.get(i / GROUP_SIZE).map(String::as_str),
                        buckets.then(|| bucket_of(&tag, i)).as_deref(),
                    )
                    .await?;
                // The first Get of a key is a durable write (Fresh becomes false); on a PKCS#11
                // token that write costs ~100 ms. Doing it here keeps the measured Gets reads.
                conn.get(&uid).await?;
                made.push((i, uid));
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, OpError>(made)
        }));
    }
    let mut uids = vec![String::new(); count];
    for t in tasks {
        let made = t
            .await
            .map_err(|e| OpError::Transport(format!("preload task: {e}")))
            .and_then(|r| r)
            .map_err(|source| RunError::Preload {
                addr: target.addr.clone(),
                source,
            })?;
        for (i, uid) in made {
            uids[i] = uid;
        }
    }
    progress.finish();
    Ok(Fixture::new(
        tag,
        uids,
        spec.scenario == Scenario::LocateAttr,
    ))
}

/// SplitMix64: a tiny deterministic generator to pick keys and mix operations (statistical
/// quality is irrelevant here; cost and reproducibility are).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

/// Times `fut` into `stats` under `op`.
async fn timed<T>(
    stats: &mut Stats,
    op: &'static str,
    fut: impl Future<Output = Result<T, OpError>>,
) -> Result<T, OpError> {
    let t0 = Instant::now();
    let r = fut.await;
    stats.record_op(op, t0.elapsed());
    r
}

/// Everything one load task needs.
struct Worker {
    target: Target,
    fixture: Arc<Fixture>,
    spec: Spec,
    rng: Rng,
    stats: Stats,
}

impl Worker {
    /// One scenario iteration. `conn` is the shared connection of scenarios that keep one.
    async fn iteration(&mut self, conn: Option<&Mutex<Conn>>, seq: u64) -> Result<(), OpError> {
        let fixture = self.fixture.clone();
        let pick = self.rng.below(fixture.uids.len());
        let stats = &mut self.stats;
        match self.spec.scenario {
            Scenario::RdlBoot => {
                let mut c = timed(stats, "connect", Conn::open(&self.target)).await?;
                let uid = timed(stats, "Locate", c.locate_name(&fixture.names[pick])).await?;
                timed(stats, "Get", c.get(&uid)).await
            }
            Scenario::Health => {
                let mut c = timed(stats, "connect", Conn::open(&self.target)).await?;
                timed(stats, "Locate", c.locate_name(&fixture.names[pick]))
                    .await
                    .map(drop)
            }
            Scenario::TlsHandshake => {
                let mut c = timed(stats, "connect", Conn::open(&self.target)).await?;
                c.expect_close().await
            }
            Scenario::Echo => {
                let Some(conn) = conn else {
                    return Err(OpError::Unexpected("no connection"));
                };
                // The echo server answers any identifier; this one has a gateway UID's length.
                timed(stats, "Get", conn.lock().await.get(ECHO_UID)).await
            }
            Scenario::Get
            | Scenario::Locate
            | Scenario::LocateAttr
            | Scenario::Lifecycle
            | Scenario::Mixed => {
                let Some(conn) = conn else {
                    return Err(OpError::Unexpected("no connection"));
                };
                let mut c = conn.lock().await;
                match self.spec.scenario {
                    Scenario::Get => timed(stats, "Get", c.get(&fixture.uids[pick])).await,
                    Scenario::Locate => locate(stats, &mut c, &fixture, pick, seq).await,
                    Scenario::LocateAttr => {
                        let want = fixture.bucket_len(pick);
                        timed(stats, "Locate/Attributes", async {
                            let found = c.locate_bucket(&fixture.bucket(pick)).await?;
                            if found == want {
                                Ok(())
                            } else {
                                Err(OpError::Unexpected(
                                    "Locate by attributes missed keys of the bucket",
                                ))
                            }
                        })
                        .await
                    }
                    Scenario::Lifecycle => lifecycle(stats, &mut c, &fixture, seq).await,
                    _ => {
                        let mix = self.spec.mix;
                        let r = self.rng.next() % mix.total();
                        if r < u64::from(mix.get) {
                            timed(stats, "Get", c.get(&fixture.uids[pick])).await
                        } else if r < u64::from(mix.get) + u64::from(mix.locate) {
                            locate(stats, &mut c, &fixture, pick, seq).await
                        } else {
                            // Names are unique server-side and `seq` restarts every round.
                            let name =
                                format!("{}-mixed-{seq}-{:016x}", fixture.tag, self.rng.next());
                            timed(stats, "Create", c.create(Some(&name), None, None))
                                .await
                                .map(drop)
                        }
                    }
                }
            }
            Scenario::Idle => Err(OpError::Unexpected("idle has no iterations")),
        }
    }
}

/// Alternates Locate by Name (even iterations) and by Object Group (odd ones).
async fn locate(
    stats: &mut Stats,
    c: &mut Conn,
    fixture: &Fixture,
    pick: usize,
    seq: u64,
) -> Result<(), OpError> {
    if seq.is_multiple_of(2) {
        timed(stats, "Locate/Name", c.locate_name(&fixture.names[pick]))
            .await
            .map(drop)
    } else {
        let group = &fixture.groups[pick / GROUP_SIZE];
        timed(stats, "Locate/Group", c.locate_group(group))
            .await
            .map(drop)
    }
}

async fn lifecycle(
    stats: &mut Stats,
    c: &mut Conn,
    fixture: &Fixture,
    seq: u64,
) -> Result<(), OpError> {
    let name = format!("{}-life-{seq}", fixture.tag);
    let uid = timed(stats, "Create", c.create(Some(&name), None, None)).await?;
    timed(stats, "Activate", c.activate(&uid)).await?;
    timed(stats, "Get", c.get(&uid)).await?;
    timed(stats, "Revoke", c.revoke(&uid)).await?;
    timed(stats, "Destroy", c.destroy(&uid)).await
}

/// One measured round of `spec` against `targets` (connection `i` to target `i` mod their
/// number).
pub(crate) async fn round(
    targets: &Targets,
    fixture: &Arc<Fixture>,
    spec: &Spec,
) -> Result<Stats, RunError> {
    if spec.scenario == Scenario::Idle {
        return idle(targets, spec).await;
    }
    // Each connection with the target it was opened to, which a reconnect reuses.
    let mut conns = Vec::new();
    if !spec.scenario.connects_per_request() {
        for i in 0..spec.connections.max(1) {
            let target = targets.nth(i);
            let c = Conn::open(target)
                .await
                .map_err(|source| RunError::Connect {
                    addr: target.addr.clone(),
                    source,
                })?;
            conns.push((target.clone(), Arc::new(Mutex::new(c))));
        }
    }
    let issued = Arc::new(AtomicU64::new(0));
    let round_salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        | 1;
    let progress = Progress::start(
        spec.progress,
        &format!("{:?} {}", spec.scenario, targets.label()),
        match spec.limit {
            Limit::Count(n) => Total::Items(n),
            Limit::Duration(d) => Total::Time(d),
        },
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..spec.concurrency.max(1) {
        // Tasks that connect per request spread their connections like the shared ones.
        let (target, conn) = match conns.get(t % conns.len().max(1)) {
            Some((target, conn)) => (target.clone(), Some(conn.clone())),
            None => (targets.nth(t).clone(), None),
        };
        let mut worker = Worker {
            target,
            fixture: fixture.clone(),
            spec: *spec,
            // Seeded per round too: `--compare` repeats rounds against one server, and the
            // mixed scenario's Create names must not repeat.
            rng: Rng((t as u64 ^ 0x5EED) ^ round_salt),
            stats: Stats::default(),
        };
        let (issued, done) = (issued.clone(), progress.counter());
        let spec = *spec;
        tasks.push(tokio::spawn(async move {
            loop {
                let seq = issued.fetch_add(1, Ordering::Relaxed);
                let due = match spec.rate {
                    Some(rate) => start + Duration::from_secs_f64(seq as f64 / rate),
                    None => Instant::now(),
                };
                let over = match spec.limit {
                    Limit::Count(n) => seq >= n,
                    Limit::Duration(d) => due >= start + d,
                };
                if over {
                    break;
                }
                if spec.rate.is_some() {
                    // Only the open loop waits: even an elapsed deadline costs a timer tick.
                    tokio::time::sleep_until(due.into()).await;
                }
                let outcome = worker.iteration(conn.as_deref(), seq).await;
                done.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(()) => {
                        worker.stats.record(due.elapsed());
                        worker.stats.tick(start.elapsed());
                    }
                    Err(e) => {
                        worker.stats.error(e.label());
                        if let (true, Some(conn)) = (e.is_transport(), &conn) {
                            // The connection may be dead: replace it (failing that, the next
                            // iterations count their own errors).
                            if let Ok(fresh) = Conn::open(&worker.target).await {
                                *conn.lock().await = fresh;
                            }
                        }
                    }
                }
            }
            worker.stats
        }));
    }
    let mut stats = Stats::default();
    for t in tasks {
        match t.await {
            Ok(s) => stats.merge(&s),
            Err(e) => stats.error(format!("bench task failed: {e}")),
        }
    }
    stats.elapsed = start.elapsed();
    stats.close_round();
    progress.finish();
    Ok(stats)
}

/// Resident set size of a process, from /proc/PID/status (kB).
fn rss_kb(pid: u32) -> Result<u64, RunError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| RunError::Rss {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or(RunError::Rss {
            path,
            problem: "no VmRSS line".into(),
        })
}

/// Opens `--connections` connections (each proven by one Discover Versions), holds them, and
/// reports the server's RSS growth per connection when `--server-pid` is given.
async fn idle(targets: &Targets, spec: &Spec) -> Result<Stats, RunError> {
    let before = spec.server_pid.map(rss_kb).transpose()?;
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let total = spec.connections as u64;
    let progress = Progress::start(
        spec.progress,
        &format!("idle connections {}", targets.label()),
        Total::Items(total),
    );
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let (targets, next, done) = (targets.clone(), next.clone(), progress.counter());
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut held = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let target = targets.nth(usize::try_from(k).unwrap_or(0));
                let t0 = Instant::now();
                let r = async {
                    let mut c = timed(&mut stats, "connect", Conn::open(target)).await?;
                    c.discover_versions().await?;
                    Ok::<_, OpError>(c)
                }
                .await;
                done.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(c) => {
                        stats.record(t0.elapsed());
                        stats.tick(start.elapsed());
                        held.push(c);
                    }
                    Err(e) => stats.error(e.label()),
                }
            }
            (stats, held)
        }));
    }
    let mut stats = Stats::default();
    let mut held = Vec::new();
    for t in tasks {
        match t.await {
            Ok((s, h)) => {
                stats.merge(&s);
                held.extend(h);
            }
            Err(e) => stats.error(format!("bench task failed: {e}")),
        }
    }
    stats.elapsed = start.elapsed();
    stats.close_round();
    progress.finish();
    let hold = match spec.limit {
        Limit::Duration(d) => d.max(IDLE_SETTLE),
        Limit::Count(_) => IDLE_SETTLE,
    };
    tokio::time::sleep(hold).await;
    stats
        .extra
        .insert("connections_open".into(), held.len().into());
    if let (Some(pid), Some(before)) = (spec.server_pid, before) {
        let after = rss_kb(pid)?;
        let delta = after.saturating_sub(before);
        stats
            .extra
            .insert("server_rss_before_kb".into(), before.into());
        stats
            .extra
            .insert("server_rss_after_kb".into(), after.into());
        let per_conn = if held.is_empty() {
            0.0
        } else {
            delta as f64 / held.len() as f64
        };
        stats
            .extra
            .insert("server_rss_per_connection_kb".into(), per_conn.into());
    }
    drop(held);
    Ok(stats)
}
