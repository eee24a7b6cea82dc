//! Failures under two gateways on one PostgreSQL database (issue 14), with the real binary, real
//! TLS and a real server: workers run key lifecycles (Create → Activate → Get → Revoke →
//! Destroy, some keys kept on the way) with their steps alternating between the gateways and
//! keep a ledger of every acknowledged write; then one part fails:
//! - a gateway is SIGKILLed: the survivor serves every acknowledged write and goes on working;
//! - the primary is SIGKILLed and its synchronous standby promoted: both gateways follow the
//!   multi-host URL to the new primary by themselves;
//! - PostgreSQL itself is SIGKILLed and restarted: both gateways reconnect, and `/readyz`
//!   follows.
//!
//! Every request is answered or fails within [`kmip_e2e::ha::REQUEST_BOUND`] (a hang fails the test); during
//! an outage a request fails cleanly (a KMIP failure answer or a broken connection), and such a
//! write is "in doubt": either its old or its new state may be there, nothing else. Every
//! acknowledged write is checked through both gateways and in the database's own rows. The time
//! from each failure to each gateway's first successful write is printed.

use kmip_e2e::ha::{create_aes256, eventually, uid, Client, Site, DEADLINE};
use kmip_e2e::postgres::PgCluster;
use kmip_e2e::{aes256_key_of, GatewayProcess};
use kmip_gateway::client::ClientTls;
use kmip_wire::model::*;
use kmip_wire::spec::tags;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent workers, each with its own connection to each gateway.
const WORKERS: usize = 4;
/// One cycle in this many keeps its key pre-active, and one more keeps it active: the
/// verification then sees keys in every State.
const KEPT_EVERY: u64 = 4;
/// Acknowledged writes on each gateway before the failure: the workload is well under way.
const WRITES_BEFORE: usize = 30;
/// Acknowledged writes on each (surviving) gateway sent after the failure: it works again.
const WRITES_AFTER: usize = 10;

/// What a key's State must be: `state`, or `or` when a write to it is in doubt (sent, then
/// refused or cut off: it may have committed or not).
#[derive(Clone, Copy, Debug)]
struct Expect {
    state: State,
    or: Option<State>,
}

impl Expect {
    fn allows(&self, seen: State) -> bool {
        seen == self.state || Some(seen) == self.or
    }
}

/// What the workers know for sure, and what the test measures.
#[derive(Default)]
struct Ledger {
    keys: BTreeMap<String, Expect>,
    /// Acknowledged writes per gateway (0 = A, 1 = B).
    acked: [usize; 2],
    /// KMIP failure answers (all General Failure: the database was away).
    refused: usize,
    /// Requests whose connection broke before the answer, per gateway.
    lost: [usize; 2],
    /// The last such connection error, for failure messages.
    last_lost: Option<String>,
    /// When the failure was caused.
    failure_at: Option<Instant>,
    /// When the repair (promotion, restart) began.
    repair_at: Option<Instant>,
    /// Writes sent after the failure and acknowledged before the repair began: the dead
    /// database cannot have committed them.
    acked_during_outage: usize,
    /// Acknowledged writes sent after the failure, per gateway, and when the first was
    /// acknowledged.
    acked_after: [usize; 2],
    first_after: [Option<Instant>; 2],
}

impl Ledger {
    fn summary(&self) -> String {
        format!(
            "{} keys, acknowledged writes A {} B {} ({} and {} sent after the failure), \
             {} refused, lost connections A {} B {} (last: {:?})",
            self.keys.len(),
            self.acked[0],
            self.acked[1],
            self.acked_after[0],
            self.acked_after[1],
            self.refused,
            self.lost[0],
            self.lost[1],
            self.last_lost
        )
    }
}

/// What became of one request.
enum Outcome {
    Acked(ResponseBatchItem),
    Refused(ResponseBatchItem),
    /// Sent, and the connection broke before the answer.
    Lost(String),
    /// No gateway took a connection: nothing was sent.
    Unreachable,
}

fn gateway(site: &Site, index: usize) -> &GatewayProcess {
    if index == 0 {
        &site.a
    } else {
        &site.b
    }
}

/// One client running lifecycles until told to stop, each request on the next gateway in turn
/// (the other one if it takes no connection).
struct Worker {
    site: Arc<Site>,
    tls: ClientTls,
    conns: [Option<Client>; 2],
    turn: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    /// Whether the database may be away (refusals are then expected, else they fail the test).
    database_fails: bool,
}

impl Worker {
    async fn run(mut self, first: usize) {
        self.turn = first;
        let mut cycle = first as u64;
        while !self.stop.load(Ordering::Relaxed) {
            self.cycle(cycle).await;
            cycle += 1;
        }
    }

    async fn send(&mut self, payload: RequestPayload) -> (usize, Instant, Outcome) {
        self.turn += 1;
        for k in 0..2 {
            let g = (self.turn + k) % 2;
            if self.conns[g].is_none() {
                match Client::connect(gateway(&self.site, g), &self.tls).await {
                    Ok(c) => self.conns[g] = Some(c),
                    Err(_) => continue,
                }
            }
            let Some(conn) = self.conns[g].as_mut() else {
                continue;
            };
            let sent = Instant::now();
            let outcome = match conn.try_call(payload).await {
                Ok(item) if item.result_status == ResultStatus::Success => Outcome::Acked(item),
                Ok(item) => Outcome::Refused(item),
                Err(e) => {
                    self.conns[g] = None;
                    Outcome::Lost(e)
                }
            };
            return (g, sent, outcome);
        }
        (0, Instant::now(), Outcome::Unreachable)
    }

    /// Records a request that was not acknowledged; a refusal must be the database's absence.
    async fn unacked(&self, g: usize, outcome: Outcome) {
        match outcome {
            Outcome::Acked(_) => {}
            Outcome::Refused(item) => {
                assert!(
                    self.database_fails,
                    "refused with the database up: {item:?}\n{}",
                    self.site.logs()
                );
                assert_eq!(
                    item.result_reason,
                    Some(ResultReason::GeneralFailure),
                    "only the database's absence may refuse a step (anything else means an \
                     acknowledged write went missing): {item:?}\n{}",
                    self.site.logs()
                );
                self.ledger.lock().unwrap().refused += 1;
            }
            Outcome::Lost(e) => {
                let mut l = self.ledger.lock().unwrap();
                l.lost[g] += 1;
                l.last_lost = Some(e);
            }
            // No gateway took a connection (none of these tests lets that happen for long):
            // do not spin.
            Outcome::Unreachable => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    fn acked_write(&self, g: usize, sent: Instant, uid: &str, state: State) {
        let acked = Instant::now();
        let mut l = self.ledger.lock().unwrap();
        l.keys.insert(uid.to_owned(), Expect { state, or: None });
        l.acked[g] += 1;
        if l.failure_at.is_some_and(|f| sent > f) {
            if l.repair_at.is_none() {
                l.acked_during_outage += 1;
            }
            l.acked_after[g] += 1;
            l.first_after[g].get_or_insert(acked);
        }
    }

    /// One state change of `uid` from `from` to `to`; whether it was acknowledged.
    async fn write(&mut self, payload: RequestPayload, uid: &str, from: State, to: State) -> bool {
        let (g, sent, outcome) = self.send(payload).await;
        match outcome {
            Outcome::Acked(_) => {
                self.acked_write(g, sent, uid, to);
                true
            }
            Outcome::Unreachable => false,
            other => {
                self.ledger.lock().unwrap().keys.insert(
                    uid.to_owned(),
                    Expect {
                        state: from,
                        or: Some(to),
                    },
                );
                self.unacked(g, other).await;
                false
            }
        }
    }

    /// Create, then (but for the keys kept pre-active) Activate and Get, then (but for the keys
    /// kept active) Revoke and Destroy. A step not acknowledged ends the
    /// cycle.
    async fn cycle(&mut self, n: u64) {
        let (g, sent, outcome) = self.send(create_aes256(None, Vec::new())).await;
        let key = match outcome {
            Outcome::Acked(ResponseBatchItem {
                payload: Some(ResponsePayload::Create(c)),
                ..
            }) => c.unique_identifier,
            Outcome::Acked(item) => panic!("Create answered without its payload: {item:?}"),
            // A Create in doubt has no uid to check: nothing was promised.
            other => return self.unacked(g, other).await,
        };
        self.acked_write(g, sent, &key, State::PreActive);
        if n.is_multiple_of(KEPT_EVERY) {
            return;
        }
        let activate = RequestPayload::Activate(uid(&key));
        if !self
            .write(activate, &key, State::PreActive, State::Active)
            .await
        {
            return;
        }
        let (g, _, outcome) = self.send(get(&key)).await;
        match outcome {
            Outcome::Acked(item) => {
                aes256_key_of(&item, &key);
            }
            other => return self.unacked(g, other).await,
        }
        if n % KEPT_EVERY == 1 {
            return;
        }
        let revoke = RequestPayload::Revoke(RevokeRequest {
            unique_identifier: Some(key.clone()),
            revocation_reason: RevocationReason {
                code: RevocationReasonCode::CessationOfOperation,
                message: None,
            },
            compromise_occurrence_date: None,
        });
        if !self
            .write(revoke, &key, State::Active, State::Deactivated)
            .await
        {
            return;
        }
        let destroy = RequestPayload::Destroy(uid(&key));
        self.write(destroy, &key, State::Deactivated, State::Destroyed)
            .await;
    }
}

fn get(key: &str) -> RequestPayload {
    RequestPayload::Get(GetRequest {
        unique_identifier: Some(key.to_owned()),
        ..GetRequest::default()
    })
}

/// The workload on both gateways: its ledger, its stop flag and its tasks.
struct Workload {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    async fn start(site: &Arc<Site>, database_fails: bool) -> Workload {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for first in 0..WORKERS {
            let worker = Worker {
                site: site.clone(),
                tls: site.tls(),
                conns: [
                    Some(site.connect(&site.a).await),
                    Some(site.connect(&site.b).await),
                ],
                turn: 0,
                ledger: ledger.clone(),
                stop: stop.clone(),
                database_fails,
            };
            tasks.push(tokio::spawn(worker.run(first)));
        }
        Workload {
            ledger,
            stop,
            tasks,
        }
    }

    /// Waits (up to [`DEADLINE`]) until the ledger satisfies `condition`; fails the test if not,
    /// or at once with a worker's own failure.
    async fn wait_for(&mut self, site: &Site, what: &str, condition: impl Fn(&Ledger) -> bool) {
        let reached = eventually(|| async {
            condition(&self.ledger.lock().unwrap()) || self.tasks.iter().any(|t| t.is_finished())
        })
        .await;
        if let Some(i) = self.tasks.iter().position(|t| t.is_finished()) {
            if let Err(e) = self.tasks.remove(i).await {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("a worker stopped before being told to");
        }
        let summary = self.ledger.lock().unwrap().summary();
        assert!(
            reached,
            "{what}: not within {DEADLINE:?} ({summary})\n{}",
            site.logs()
        );
    }

    fn failed_now(&self) {
        self.ledger.lock().unwrap().failure_at = Some(Instant::now());
    }

    fn repairing_now(&self) {
        self.ledger.lock().unwrap().repair_at = Some(Instant::now());
    }

    /// Stops the workers (each finishes its request, bounded by [`REQUEST_BOUND`]); the ledger.
    async fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            match tokio::time::timeout(DEADLINE, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
                Err(_) => panic!("a worker did not stop within {DEADLINE:?}"),
            }
        }
        Arc::try_unwrap(self.ledger)
            .ok()
            .expect("the workers are done")
            .into_inner()
            .unwrap()
    }
}

/// The State a gateway gives `key` (a destroyed key may answer Object Destroyed instead).
async fn observed(client: &mut Client, key: &str) -> State {
    let item = client
        .call(RequestPayload::GetAttributes(GetAttributesRequest {
            unique_identifier: Some(key.to_owned()),
            names: Vec::new(),
        }))
        .await;
    match (&item.result_status, &item.payload) {
        (ResultStatus::Success, Some(ResponsePayload::GetAttributes(a))) => a
            .attributes
            .iter()
            .find(|a| a.is(tags::STATE))
            .and_then(|a| a.as_enum::<State>())
            .unwrap_or_else(|| panic!("{key} has no State: {item:?}")),
        _ if item.result_reason == Some(ResultReason::ObjectDestroyed) => State::Destroyed,
        _ => panic!("{key}: neither there nor destroyed: {item:?}"),
    }
}

/// Every key of the ledger as acknowledged, through `gw`: its State, and the material of a key
/// still pre-active or active.
async fn verify_through(site: &Site, gw: &GatewayProcess, name: &str, ledger: &Ledger) {
    let mut client = site.connect(gw).await;
    for (key, expect) in &ledger.keys {
        let seen = observed(&mut client, key).await;
        assert!(
            expect.allows(seen),
            "gateway {name}: {key} is {seen:?}, acknowledged as {expect:?}\n{}",
            site.logs()
        );
        if matches!(seen, State::PreActive | State::Active) {
            let item = client.call(get(key)).await;
            aes256_key_of(&item, key);
        }
    }
}

/// Every key of the ledger in the database's rows: there, and its wrapped data key gone exactly
/// when it was destroyed.
fn verify_rows(pg: &PgCluster, ledger: &Ledger) {
    let rows: BTreeMap<String, bool> = pg
        .psql("SELECT uid, wrapped_key IS NULL FROM kmip_objects")
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(uid, shredded)| (uid.to_owned(), shredded == "t"))
        .collect();
    for (key, expect) in &ledger.keys {
        let shredded = rows
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged {key} ({expect:?}) is not in the database"));
        if !expect.allows(State::Destroyed) {
            assert!(!shredded, "{key} ({expect:?}) lost its wrapped key");
        }
        if expect.state == State::Destroyed {
            assert!(shredded, "destroyed {key} keeps its wrapped key");
        }
    }
    eprintln!(
        "{} rows in the database for {} acknowledged keys",
        rows.len(),
        ledger.keys.len()
    );
}

/// Prints the time from the failure (and from the repair, if any: `repaired` = what and when)
/// to the acknowledgement of each gateway's first write sent after the failure.
fn print_recovery(what: &str, ledger: &Ledger, repaired: Option<(&str, Instant)>) {
    let failure = ledger.failure_at.expect("a failure happened");
    for (g, name) in ["A", "B"].iter().enumerate() {
        if let Some(first) = ledger.first_after[g] {
            let since_repair = repaired
                .map(|(how, at)| {
                    format!(
                        ", {:.2} s after the {how} finished",
                        first.saturating_duration_since(at).as_secs_f64()
                    )
                })
                .unwrap_or_default();
            eprintln!(
                "{what}: gateway {name}: first write sent after the failure acknowledged \
                 {:.2} s after it{since_repair}",
                (first - failure).as_secs_f64()
            );
        }
    }
    eprintln!("{what}: {}", ledger.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_stream_loses_no_acknowledged_write_on_the_survivor() {
    let site = Arc::new(Site::start("request"));
    let mut work = Workload::start(&site, false).await;
    work.wait_for(&site, "writes on both gateways", |l| {
        l.acked.iter().all(|&n| n >= WRITES_BEFORE)
    })
    .await;
    site.a.sigkill();
    work.failed_now();
    work.wait_for(&site, "B goes on after A died", |l| {
        l.acked_after[1] >= WRITES_AFTER
    })
    .await;
    let ledger = work.finish().await;
    print_recovery("gateway SIGKILL", &ledger, None);
    assert_eq!(
        ledger.acked_after[0], 0,
        "a dead gateway acknowledged a write"
    );
    assert_eq!(ledger.lost[1], 0, "the survivor broke a connection");
    verify_through(&site, &site.b, "B", &ledger).await;
    verify_rows(&site.pg, &ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_gateways_follow_a_promoted_synchronous_standby() {
    let site = Arc::new(Site::start_with_standby("request"));
    let mut work = Workload::start(&site, true).await;
    work.wait_for(&site, "writes on both gateways", |l| {
        l.acked.iter().all(|&n| n >= WRITES_BEFORE)
    })
    .await;
    site.pg.crash();
    work.failed_now();
    // With the primary gone and the standby read-only, writes fail, cleanly and in bounded
    // time (the workers assert both).
    work.wait_for(&site, "writes refused during the outage", |l| l.refused > 0)
        .await;
    let standby = site.standby.as_ref().expect("a standby");
    work.repairing_now();
    standby.promote();
    let promoted = Instant::now();
    work.wait_for(&site, "writes on both gateways after the promotion", |l| {
        l.acked_after.iter().all(|&n| n >= WRITES_AFTER)
    })
    .await;
    let ledger = work.finish().await;
    print_recovery("primary failover", &ledger, Some(("promotion", promoted)));
    assert_eq!(
        ledger.acked_during_outage, 0,
        "writes acknowledged with the primary dead and the standby not promoted"
    );
    verify_through(&site, &site.a, "A", &ledger).await;
    verify_through(&site, &site.b, "B", &ledger).await;
    verify_rows(standby, &ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_gateways_reconnect_to_a_restarted_database() {
    let site = Arc::new(Site::start("request"));
    let mut work = Workload::start(&site, true).await;
    work.wait_for(&site, "writes on both gateways", |l| {
        l.acked.iter().all(|&n| n >= WRITES_BEFORE)
    })
    .await;
    site.pg.crash();
    work.failed_now();
    work.wait_for(&site, "writes refused during the outage", |l| l.refused > 0)
        .await;
    for (gw, name) in [(&site.a, "A"), (&site.b, "B")] {
        let down = eventually(|| async { gw.admin_get("/readyz").0 == 503 }).await;
        assert!(
            down,
            "{name} still ready with the database killed\n{}",
            site.logs()
        );
    }
    work.repairing_now();
    site.pg.restart();
    let restarted = Instant::now();
    for (gw, name) in [(&site.a, "A"), (&site.b, "B")] {
        let up = eventually(|| async { gw.admin_get("/readyz").0 == 200 }).await;
        assert!(
            up,
            "{name} not ready again after the restart\n{}",
            site.logs()
        );
    }
    work.wait_for(&site, "writes on both gateways after the restart", |l| {
        l.acked_after.iter().all(|&n| n >= WRITES_AFTER)
    })
    .await;
    let ledger = work.finish().await;
    print_recovery(
        "database SIGKILL and restart",
        &ledger,
        Some(("restart", restarted)),
    );
    assert_eq!(
        ledger.acked_during_outage, 0,
        "writes acknowledged with the database dead"
    );
    verify_through(&site, &site.a, "A", &ledger).await;
    verify_through(&site, &site.b, "B", &ledger).await;
    verify_rows(&site.pg, &ledger);
}
