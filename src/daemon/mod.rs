//! The registry watcher as a daemon (`kairo watch --listen ADDR`).
//!
//! One tokio loop reacts to a closed set of events (`Event`: tick, webhook, shutdown). A scan
//! reads the watched set from the remote branch's tip, looks images up concurrently (bounded),
//! and hands its bumps, one commit per environment, to the one writer thread: git and the
//! write path are synchronous and must never run two at once. At most `--max-scans` scans run
//! at once; ticks beyond that are dropped (the next tick covers them) and webhook images wait
//! for a free slot. An HTTP server (axum) serves `/metrics`, `/healthz`, `/readyz` and
//! `/webhook`. With `--leader-elect`, only the holder of a Lease (`lease`) scans and writes.
//! With `--drift-interval`, a `DriftTick` compares each environment at the remote tip with the
//! cluster (`drift`, read-only) and exports the result; the writer thread renders, the loop
//! only lists.
//!
//! Architecture Invariant: only the writer thread touches the repository; the loop and the
//! HTTP handlers never block on git. The writer thread never sleeps on a retry: a rejected
//! push goes back on its queue with a due time (`WriteQueue`). SIGTERM stops new work, lets the write in flight finish
//! (its push included), skips writes not yet started (the next run redoes them: Git is the
//! state), gives the Lease up, and exits 0.

pub mod lease;
pub mod metrics;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

use crate::Outcome;
use crate::bump::{Decision, ImageSpec};
use crate::cli::WatchArgs;
use crate::drift;
use crate::git::Writer;
use crate::model::ENVIRONMENTS_DIR;
use crate::pipeline::Inputs;
use crate::registry::{Client, ImageName};
use crate::render::{CLUSTERS_DIR, TEMPLATES_DIR};
use crate::watch::command::Env;
use crate::watch::{self, Found, Watched, WriteSettings};
use metrics::{
    DriftEnvLabels, EnvLabels, ImageLabels, Metrics, RegistryLabels, ReleaseLabels, ScanLabels,
    SkippedLabels, WebhookLabels,
};

/// Without `--interval`, how often the loop wakes to scan the images whose own interval has
/// passed.
const TICK: Duration = Duration::from_secs(30);

/// The page size of the daemon's list requests (as `kairo drift --page-size` defaults to).
const DRIFT_PAGE_SIZE: u32 = 500;

/// Everything the loop reacts to.
#[derive(Debug)]
enum Event {
    /// Time to scan the images that are due.
    Tick,
    /// Time to compare the cluster with Git (`--drift-interval`).
    DriftTick,
    /// A push webhook named these images: scan them now.
    Webhook(Vec<ImageName>),
    /// SIGTERM or SIGINT.
    Shutdown,
}

#[derive(Debug, Clone)]
enum Trigger {
    Tick,
    Webhook(Vec<ImageName>),
}

impl Trigger {
    fn label(&self) -> &'static str {
        match self {
            Trigger::Tick => "tick",
            Trigger::Webhook(_) => "webhook",
        }
    }
}

/// Work for the writer thread.
enum Job {
    /// Read the watched set (and the names of the environments defined) at the remote tip.
    Load(oneshot::Sender<Result<Loaded, String>>),
    /// Render the environments named (every one when none) at the remote tip into their
    /// desired state.
    Desired(
        Vec<String>,
        oneshot::Sender<Result<Vec<drift::Desired>, String>>,
    ),
    Write(
        BTreeMap<String, Vec<ImageSpec>>,
        oneshot::Sender<Vec<WriteSummary>>,
    ),
    /// A scan has ended and dropped what it read: hand freed memory back to the system.
    Release,
    Stop,
}

/// The watched set, and the environments defined, at the remote tip.
struct Loaded {
    watched: Vec<Watched>,
    environments: Vec<String>,
}

#[derive(Debug)]
struct WriteSummary {
    environment: String,
    /// Images moved by a pushed commit.
    pushed_moves: usize,
    failed: bool,
}

/// State shared by the loop, the scans and the HTTP handlers.
struct Shared {
    metrics: Metrics,
    client: Client,
    concurrency: usize,
    interval: Option<Duration>,
    jobs: std::sync::mpsc::Sender<Job>,
    events: mpsc::Sender<Event>,
    webhook: webhook::Auth,
    /// The watched set was read at least once.
    ready: AtomicBool,
    leader: AtomicBool,
    /// When each image (`env/service`) was last looked up.
    last_scanned: Mutex<BTreeMap<String, Instant>>,
    /// The watched repositories at the last read of the watched set (`None` before it), so a
    /// webhook naming none of them is answered as ignored instead of starting a scan.
    watched_images: Mutex<Option<BTreeSet<ImageName>>>,
    /// The HTTP server's bounds (the webhook handler applies the body deadline).
    http: HttpLimits,
}

impl Shared {
    async fn load(&self) -> Result<Loaded, String> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Load(tx))
            .map_err(|_| "the writer thread has stopped".to_string())?;
        let loaded = rx
            .await
            .map_err(|_| "the writer thread has stopped".to_string())??;
        *self.watched_images.lock().expect("not poisoned") =
            Some(loaded.watched.iter().map(|w| w.image.clone()).collect());
        Ok(loaded)
    }

    async fn desired(&self, envs: &[String]) -> Result<Vec<drift::Desired>, String> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Desired(envs.to_vec(), tx))
            .map_err(|_| "the writer thread has stopped".to_string())?;
        rx.await
            .map_err(|_| "the writer thread has stopped".to_string())?
    }

    async fn write(&self, bumps: BTreeMap<String, Vec<ImageSpec>>) -> Vec<WriteSummary> {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Write(bumps, tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// Settings for `--leader-elect`.
struct LeaderConfig {
    name: String,
    namespace: Option<String>,
    identity: String,
    duration: Duration,
}

fn fail(message: &str, hint: Option<&str>) -> Outcome {
    crate::output::error(message, hint);
    Outcome::Failed
}

/// `kairo watch --listen ADDR`.
pub fn command(root: &Path, args: &WatchArgs, env: Env) -> Outcome {
    let writer = match env.writer {
        Ok(w) => w,
        Err(e) => return crate::watch::command::load_failed(&e.into()),
    };
    let client = match crate::watch::command::client(args) {
        Ok(c) => c,
        Err(o) => return o,
    };
    let leader = if args.leader_elect {
        let Some(identity) = args.lease_identity.clone().or(env.pod_name) else {
            return fail(
                "`--leader-elect` needs this replica's identity",
                Some("pass `--lease-identity`, or set POD_NAME (the Deployment in deploy/ does)"),
            );
        };
        Some(LeaderConfig {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone().or(env.pod_namespace),
            identity,
            duration: args.lease_duration.max(Duration::from_secs(1)),
        })
    } else {
        None
    };
    let auth = webhook::Auth {
        hmac_secret: args
            .webhook_secret
            .clone()
            .filter(|s| !s.is_empty())
            .map(String::into_bytes),
        token: args.webhook_token.clone().filter(|s| !s.is_empty()),
    };
    let settings = crate::watch::command::settings(args, env.policy);
    // One thread for the loop, the lookups and the HTTP server: they wait on the network, and
    // the CPU-heavy work (render, git) has its own writer thread. One thread also means one
    // allocator heap to hand back after a scan (see `release_memory`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), None),
    };
    let config = Config {
        listen: args.listen.expect("--listen"),
        interval: args.interval,
        drift_interval: args.drift_interval.map(|d| d.max(Duration::from_secs(1))),
        drift_envs: Arc::new(args.drift_envs.clone()),
        concurrency: args.concurrency as usize,
        max_scans: args.max_scans as usize,
        auth,
        leader,
        kubeconfig: env.kubeconfig,
    };
    runtime.block_on(run(root.to_path_buf(), writer, settings, client, config))
}

struct Config {
    listen: SocketAddr,
    interval: Option<Duration>,
    drift_interval: Option<Duration>,
    /// `--drift-env`: the environments this daemon's cluster runs (every one when empty).
    drift_envs: Arc<Vec<String>>,
    concurrency: usize,
    max_scans: usize,
    auth: webhook::Auth,
    leader: Option<LeaderConfig>,
    /// `KUBECONFIG`, for the drift client.
    kubeconfig: Option<std::ffi::OsString>,
}

/// One environment's bumps waiting for their (next) attempt on the writer thread.
struct PendingWrite {
    /// The scan (`Job::Write`) it belongs to.
    batch: u64,
    environment: String,
    specs: Vec<ImageSpec>,
    /// Attempts made so far.
    attempts: u32,
    /// The first attempt, for the retry budget.
    started: Option<Instant>,
    due: Instant,
}

/// A scan's writes: answered once every environment is written or given up.
struct Batch {
    left: usize,
    summaries: Vec<WriteSummary>,
    reply: oneshot::Sender<Vec<WriteSummary>>,
}

/// Writes waiting on the writer thread, each with the time it is due. A rejected push is put
/// back with the delay the retry policy decides, so the thread keeps serving other jobs (and
/// a shutdown) meanwhile instead of sleeping inside the write path.
#[derive(Default)]
struct WriteQueue {
    pending: Vec<PendingWrite>,
    batches: BTreeMap<u64, Batch>,
    next_batch: u64,
}

impl WriteQueue {
    fn add(
        &mut self,
        bumps: BTreeMap<String, Vec<ImageSpec>>,
        reply: oneshot::Sender<Vec<WriteSummary>>,
        now: Instant,
    ) {
        if bumps.is_empty() {
            let _ = reply.send(Vec::new());
            return;
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(
            batch,
            Batch {
                left: bumps.len(),
                summaries: Vec::new(),
                reply,
            },
        );
        for (environment, specs) in bumps {
            self.pending.push(PendingWrite {
                batch,
                environment,
                specs,
                attempts: 0,
                started: None,
                due: now,
            });
        }
    }

    /// When the earliest write is due.
    fn next_due(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.due).min()
    }

    /// The earliest write due at `now`, in the order they were added among equals.
    fn take_due(&mut self, now: Instant) -> Option<PendingWrite> {
        let i = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.due <= now)
            .min_by_key(|(i, p)| (p.due, *i))
            .map(|(i, _)| i)?;
        Some(self.pending.remove(i))
    }

    fn retry(&mut self, mut p: PendingWrite, due: Instant) {
        p.due = due;
        self.pending.push(p);
    }

    fn done(&mut self, batch: u64, summary: WriteSummary) {
        let Some(b) = self.batches.get_mut(&batch) else {
            return;
        };
        b.summaries.push(summary);
        b.left -= 1;
        if b.left == 0 {
            let b = self.batches.remove(&batch).expect("present");
            let _ = b.reply.send(b.summaries);
        }
    }
}

/// One attempt of a pending write: finished (written, or given up) into its batch, or put
/// back on the queue with the delay the retry policy decided.
fn attempt(
    root: &Path,
    writer: &Writer,
    settings: &WriteSettings,
    queue: &mut WriteQueue,
    mut p: PendingWrite,
    retries: &prometheus_client::metrics::counter::Counter,
) {
    let started = *p.started.get_or_insert_with(Instant::now);
    p.attempts += 1;
    // One push per attempt: the retry decision comes back here instead of a sleep.
    let once = crate::bump::RetryPolicy {
        max_attempts: Some(1),
        ..settings.retry
    };
    let written = watch::write_env(
        root,
        writer,
        &p.environment,
        &p.specs,
        settings,
        once,
        p.attempts - 1,
        &mut |_| {},
    );
    if let Err(crate::bump::BumpError::Denied(findings)) = &written.result {
        // Which rule of which policy file denied which object: the log must let an operator
        // act without reproducing the write (`kairo bump` prints the same findings).
        for f in findings
            .iter()
            .filter(|f| f.severity == crate::policy::Severity::Deny)
        {
            tracing::error!(environment = %p.environment, object = %f.object, policy = %f.policy, rule = %f.rule, path = %f.path, reason = %f.message, "a policy denies the bumps");
        }
    }
    if let Err(e) = &written.result
        && watch::retryable(e)
    {
        match settings
            .retry
            .decide(p.attempts, started.elapsed(), fastrand::f64())
        {
            Decision::RetryAfter(delay) => {
                retries.inc();
                tracing::info!(environment = %p.environment, attempt = p.attempts, ?delay, error = %e, "write requeued");
                queue.retry(p, Instant::now() + delay);
                return;
            }
            Decision::GiveUp => {
                tracing::error!(environment = %p.environment, attempts = p.attempts, seconds = started.elapsed().as_secs(), "gave up writing the bumps; the next scan tries again");
            }
        }
    }
    let summary = WriteSummary {
        pushed_moves: match &written.result {
            Ok(o) if o.pushed.is_some() => o.moves.len(),
            _ => 0,
        },
        failed: written.result.is_err(),
        environment: p.environment,
    };
    queue.done(p.batch, summary);
}

/// This process's resident memory (`VmRSS`), its peak (`VmHWM`), and the anonymous and
/// file-backed parts of it (`RssAnon`, `RssFile`), in KiB, for debug logs.
fn memory() -> Option<[u64; 4]> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some([
        kib("VmRSS:")?,
        kib("VmHWM:")?,
        kib("RssAnon:")?,
        kib("RssFile:")?,
    ])
}

fn log_memory(point: &str) {
    if let Some([rss_kib, peak_kib, anon_kib, file_kib]) = memory() {
        tracing::debug!(point, rss_kib, peak_kib, anon_kib, file_kib, "memory");
    }
}

/// Hands the memory a write freed back to the system. A write renders every service of an
/// environment and builds a pack: tens of megabytes, freed when it ends, but both allocators
/// keep freed pages mapped until later allocation activity, which an idle daemon does not
/// have. mimalloc (the global allocator, see main.rs) purges on `mi_collect(true)`; libgit2 and
/// the other C libraries allocate with glibc's malloc, which returns its free pages on
/// `malloc_trim`.
fn release_memory() {
    crate::model::forget_parsed();
    unsafe extern "C" {
        // mimalloc's own API (mimalloc.h), linked in by regorus-mimalloc-sys.
        fn mi_collect(force: bool);
    }
    // SAFETY: `mi_collect` has no preconditions; it only frees memory no one uses.
    unsafe { mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The writer thread: owns the repository handle, runs one job at a time. Writes go through
/// a queue with due times; other jobs are served between them.
fn writer_thread(
    root: PathBuf,
    writer: Writer,
    settings: WriteSettings,
    jobs: std::sync::mpsc::Receiver<Job>,
    stopping: Arc<AtomicBool>,
    retries: prometheus_client::metrics::counter::Counter,
) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut queue = WriteQueue::default();
    loop {
        if stopping.load(Ordering::SeqCst) {
            // Queued work (writes waiting to retry included) is dropped on shutdown; the next
            // run finds it again in Git.
            break;
        }
        // Jobs that are waiting first, then a due write, then wait for whichever comes first.
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                if let Some(p) = queue.take_due(now) {
                    attempt(&root, &writer, &settings, &mut queue, p, &retries);
                    after_job("a write");
                    continue;
                }
                match queue.next_due() {
                    Some(due) => match jobs.recv_timeout(due.saturating_duration_since(now)) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => continue,
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                    None => match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    },
                }
            }
        };
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        match job {
            Job::Stop => break,
            Job::Load(reply) => {
                let result = watch::load(&writer, &settings)
                    .map(|m| {
                        let (watched, bad) = watch::watched(&m);
                        for b in bad {
                            tracing::error!(environment = %b.environment, service = %b.service, error = %b.message, "not watched");
                        }
                        Loaded {
                            watched,
                            environments: m.defined,
                        }
                    })
                    .map_err(|e| e.to_string());
                let _ = reply.send(result);
            }
            Job::Desired(envs, reply) => {
                let result = watch::tip_files(
                    &writer,
                    &settings,
                    &[ENVIRONMENTS_DIR, TEMPLATES_DIR, CLUSTERS_DIR],
                )
                .map_err(|e| e.to_string())
                .and_then(|(tip, files)| {
                    let revision = tip.to_string();
                    let inputs = Inputs::Files {
                        label: revision.clone(),
                        files,
                        bootstrapped: None,
                    };
                    drift::render_desired(&inputs, &envs, &revision).map_err(|e| e.to_string())
                });
                let _ = reply.send(result);
            }
            Job::Write(bumps, reply) => {
                queue.add(bumps, reply, Instant::now());
                continue;
            }
            Job::Release => {
                after_job("a scan");
                continue;
            }
        }
        after_job("a read");
    }
}

fn after_job(what: &str) {
    log_memory(&format!("after {what}"));
    release_memory();
    log_memory(&format!("after {what}, memory released"));
}

async fn run(
    root: PathBuf,
    writer: Writer,
    settings: WriteSettings,
    client: Client,
    config: Config,
) -> Outcome {
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                &format!("cannot listen on `{}`: {e}", config.listen),
                Some("pass a free address to `--listen`"),
            );
        }
    };
    let elector = match &config.leader {
        Some(l) => match elector(l, config.kubeconfig.as_deref()).await {
            Ok(e) => Some(e),
            Err(e) => {
                return fail(
                    &format!(
                        "cannot set up the Kubernetes client for leader election: {}",
                        crate::output::with_causes(&e, ": ")
                    ),
                    e.hint().as_deref().or(Some(
                        "run in a cluster (in-cluster config) or set KUBECONFIG; or drop `--leader-elect`",
                    )),
                );
            }
        },
        None => None,
    };
    let cluster = match config.drift_interval {
        Some(_) => {
            let connection = drift::Connection {
                context: None,
                page_size: DRIFT_PAGE_SIZE,
                // As `kairo drift`'s default `--request-timeout`: a stalled API server fails
                // one check instead of holding the drift loop.
                request_timeout: std::time::Duration::from_secs(30),
                kubeconfig: config.kubeconfig.clone(),
            };
            match drift::Cluster::connect(&connection).await {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    return fail(
                        &format!("cannot set up the Kubernetes client for drift checks: {e}"),
                        e.hint()
                            .as_deref()
                            .or(Some("set KUBECONFIG, or drop `--drift-interval`")),
                    );
                }
            }
        }
        None => None,
    };

    let stopping = Arc::new(AtomicBool::new(false));
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let metrics = Metrics::new();
    let writer_handle = {
        let stopping = stopping.clone();
        // Counted by the writer as each rejected push is requeued, so a storm shows while it
        // lasts, and retries of a write that never lands are counted too.
        let retries = metrics.push_retries.clone();
        std::thread::Builder::new()
            .name("kairo-writer".into())
            .spawn(move || writer_thread(root, writer, settings, jobs_rx, stopping, retries))
            .expect("spawn the writer thread")
    };
    let (events_tx, mut events) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        metrics,
        client,
        concurrency: config.concurrency,
        interval: config.interval,
        jobs: jobs_tx,
        events: events_tx.clone(),
        webhook: config.auth,
        ready: AtomicBool::new(false),
        leader: AtomicBool::new(elector.is_none()),
        last_scanned: Mutex::new(BTreeMap::new()),
        watched_images: Mutex::new(None),
        http: HttpLimits::DEFAULT,
    });
    shared.metrics.leader.set(i64::from(elector.is_none()));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(
        listener,
        router(shared.clone()),
        stop_rx.clone(),
        shared.http,
        shared.metrics.connections_closed.clone(),
    ));
    tracing::info!(listen = %config.listen, "kairo watch is listening");
    log_memory("at start");
    tokio::spawn(signals(events_tx));
    let leading = elector.map(|e| tokio::spawn(lead(shared.clone(), e, stop_rx.clone())));

    // The watched set once at start, leader or not: `/readyz` says whether Git is readable.
    // A `--drift-env` that names no environment is a usage error, said now rather than
    // counted at every drift check (when Git cannot be read yet, the checks report it).
    let mut refused = None;
    match shared.load().await {
        Ok(l) => match config
            .drift_envs
            .iter()
            .find(|e| !l.environments.contains(e))
        {
            Some(name) => {
                refused = Some(fail(
                    &format!("`--drift-env`: unknown environment `{name}`"),
                    Some(&format!(
                        "environments: {}",
                        crate::commands::list(&l.environments)
                    )),
                ));
            }
            None => {
                shared.metrics.watched.set(l.watched.len() as i64);
                shared.ready.store(true, Ordering::SeqCst);
            }
        },
        Err(e) => tracing::error!(error = %e, "cannot read the watched images"),
    }

    let mut ticker = tokio::time::interval(config.interval.unwrap_or(TICK));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut scans = tokio::task::JoinSet::new();
    let mut drift_ticker = config.drift_interval.map(|d| {
        let mut t = tokio::time::interval(d);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    // At most one drift check at a time: a slow API server skips ticks rather than piling up.
    let mut drift_checks = tokio::task::JoinSet::new();
    // Images named by webhooks while every scan slot was busy.
    let mut waiting: BTreeSet<ImageName> = BTreeSet::new();
    // Refused at start: straight to the shutdown below (nothing in the loop sets `refused`).
    while refused.is_none() {
        let event = tokio::select! {
            _ = ticker.tick() => Event::Tick,
            Some(_) = async { Some(drift_ticker.as_mut()?.tick().await) } => Event::DriftTick,
            Some(_) = drift_checks.join_next(), if !drift_checks.is_empty() => continue,
            Some(e) = events.recv() => e,
            Some(_) = scans.join_next(), if !scans.is_empty() => {
                if !waiting.is_empty() && shared.leader.load(Ordering::SeqCst) {
                    let images = std::mem::take(&mut waiting).into_iter().collect();
                    scans.spawn(scan(shared.clone(), Trigger::Webhook(images)));
                }
                continue;
            }
        };
        tracing::debug!(?event, "event");
        let leader = shared.leader.load(Ordering::SeqCst);
        match event {
            Event::Tick if !leader => {}
            Event::Tick if scans.len() >= config.max_scans => {
                tracing::info!("every scan slot is busy; this tick is skipped");
            }
            Event::Tick => {
                scans.spawn(scan(shared.clone(), Trigger::Tick));
            }
            Event::Webhook(_) if !leader => {}
            Event::Webhook(images) if scans.len() >= config.max_scans => waiting.extend(images),
            Event::Webhook(images) => {
                scans.spawn(scan(shared.clone(), Trigger::Webhook(images)));
            }
            Event::DriftTick if !leader => {}
            Event::DriftTick if !drift_checks.is_empty() => {
                tracing::info!("the last drift check is still running; this one is skipped");
            }
            Event::DriftTick => {
                if let Some(c) = &cluster {
                    drift_checks.spawn(drift_check(
                        shared.clone(),
                        c.clone(),
                        config.drift_envs.clone(),
                    ));
                }
            }
            Event::Shutdown => break,
        }
    }

    tracing::info!("shutting down: finishing the write in flight");
    stopping.store(true, Ordering::SeqCst);
    let _ = shared.jobs.send(Job::Stop);
    // Scans still looking images up are dropped; a write the writer thread has begun is not
    // interrupted by this (it runs on its own thread), and joining waits for it.
    scans.abort_all();
    drift_checks.abort_all();
    let _ = tokio::task::spawn_blocking(move || writer_handle.join()).await;
    let _ = stop_tx.send(true);
    if let Some(l) = leading {
        let _ = l.await;
    }
    let _ = server.await;
    tracing::info!("stopped");
    refused.unwrap_or(Outcome::Clean)
}

async fn signals(events: mpsc::Sender<Event>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = events.send(Event::Shutdown).await;
}

/// The Lease client, configured as `kairo drift` (and kubectl) resolve it: `KUBECONFIG`'s
/// files merged with missing ones skipped, else `~/.kube/config`, else in-cluster.
async fn elector(
    l: &LeaderConfig,
    kubeconfig: Option<&std::ffi::OsStr>,
) -> Result<lease::Elector, drift::ClusterError> {
    let (config, label) = drift::resolve(None, kubeconfig).await?;
    let namespace = l
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|source| drift::ClusterError::Client {
        cluster: label,
        source,
    })?;
    Ok(lease::Elector::new(
        kube::Api::namespaced(client, &namespace),
        &l.name,
        &l.identity,
        l.duration,
    ))
}

/// Keeps the Lease (or watches for it to expire) until shutdown, then gives it up.
async fn lead(
    shared: Arc<Shared>,
    mut elector: lease::Elector,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // client-go renews well inside the lease duration; a third of it leaves two retries.
    let period = (elector.duration() / 3).max(Duration::from_millis(100));
    loop {
        // A round is bounded: an API server that accepts and never answers must not hold this
        // loop, or a leader that can no longer renew would go on acting as one after another
        // replica has taken the Lease over.
        match tokio::time::timeout(period, elector.step(Instant::now())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "leader election: the Lease could not be read or written")
            }
            Err(_) => {
                tracing::warn!(timeout = ?period, "leader election: the API server did not answer in time")
            }
        }
        let leader = elector.is_leader(Instant::now());
        if shared.leader.swap(leader, Ordering::SeqCst) != leader {
            tracing::info!(identity = elector.identity(), leader, "leadership changed");
            if leader {
                // A new leader scans what is due at once rather than at the next tick.
                let _ = shared.events.send(Event::Tick).await;
            } else {
                // Only the leader checks drift: a former leader's last values must not be
                // scraped beside the new leader's.
                shared.metrics.clear_drift();
            }
        }
        shared.metrics.leader.set(i64::from(leader));
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => break,
        }
    }
    shared.leader.store(false, Ordering::SeqCst);
    // Bounded too: a silent API server must not keep SIGTERM from ending the process (the
    // Lease then expires by itself).
    match tokio::time::timeout(period, elector.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "leader election: the Lease could not be given up")
        }
        Err(_) => {
            tracing::warn!(timeout = ?period, "leader election: the API server did not answer in time; the Lease expires by itself")
        }
    }
}

/// One scan, then the writer thread releases the memory it freed (the watched set, tag
/// lists and the write are dropped by then).
async fn scan(shared: Arc<Shared>, trigger: Trigger) {
    scan_once(&shared, trigger).await;
    // This thread's share (tag lists, responses, the watched set) and the writer's.
    release_memory();
    let _ = shared.jobs.send(Job::Release);
}

/// One scan: read the watched set, look the due (or named) images up, write the bumps.
async fn scan_once(shared: &Arc<Shared>, trigger: Trigger) {
    let started = Instant::now();
    let m = &shared.metrics;
    let labels = |result: &str| ScanLabels {
        trigger: trigger.label().into(),
        result: result.into(),
    };
    let watched = match shared.load().await {
        Ok(l) => l.watched,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the watched images; nothing scanned");
            m.scans.get_or_create(&labels("error")).inc();
            return;
        }
    };
    m.watched.set(watched.len() as i64);
    shared.ready.store(true, Ordering::SeqCst);
    let now = Instant::now();
    let selected: Vec<Watched> = {
        let last = shared.last_scanned.lock().expect("not poisoned");
        watched
            .into_iter()
            .filter(|w| match &trigger {
                Trigger::Webhook(images) => images.contains(&w.image),
                Trigger::Tick => {
                    shared.interval.is_some()
                        || last
                            .get(&w.key())
                            .is_none_or(|t| now.duration_since(*t) >= w.policy.interval)
                }
            })
            .collect()
    };
    if let Trigger::Webhook(images) = &trigger
        && selected.is_empty()
    {
        // The watched set changed since the webhook was answered: nothing to scan, and not
        // a scan.
        tracing::info!(images = ?images.iter().map(ToString::to_string).collect::<Vec<_>>(), "the webhook names no watched image; nothing scanned");
        return;
    }
    {
        let mut last = shared.last_scanned.lock().expect("not poisoned");
        for w in &selected {
            last.insert(w.key(), now);
        }
    }
    log_memory("after reading the watched set");
    let found = watch::scan(&shared.client, &selected, shared.concurrency).await;
    log_memory("after the lookups");
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for r in &found.images {
        match &r.found {
            Found::UpToDate { tags_seen, .. } | Found::Bump { tags_seen, .. } => {
                m.tags_seen.inc_by(*tags_seen as u64);
                m.last_success
                    .get_or_create(&ImageLabels {
                        image: r.image.clone(),
                    })
                    .set(unix);
            }
            Found::PolicyError { tags_seen, .. } => {
                m.tags_seen.inc_by(*tags_seen as u64);
            }
            Found::Unavailable { registry, code, .. } if code == "paused" => {
                m.registry_skipped
                    .get_or_create(&SkippedLabels {
                        registry: registry.clone(),
                        reason: "rate_limit_pause".into(),
                    })
                    .inc();
            }
            Found::Unavailable { registry, code, .. } => {
                m.registry_errors
                    .get_or_create(&RegistryLabels {
                        registry: registry.clone(),
                        code: code.clone(),
                    })
                    .inc();
            }
        }
    }
    let mut failed = found.unavailable() > 0;
    if !found.bumps.is_empty() {
        for w in shared.write(found.bumps).await {
            let env = EnvLabels {
                environment: w.environment,
            };
            m.bumps_committed
                .get_or_create(&env)
                .inc_by(w.pushed_moves as u64);
            if w.failed {
                failed = true;
                m.push_failures.get_or_create(&env).inc();
            }
        }
    }
    m.scan_duration.observe(started.elapsed().as_secs_f64());
    m.scans
        .get_or_create(&labels(if failed { "partial" } else { "ok" }))
        .inc();
    tracing::info!(trigger = trigger.label(), images = found.images.len(), elapsed = ?started.elapsed(), "scan done");
}

/// One drift check: render each environment at the remote tip (on the writer thread), list its
/// objects, compare, export. A failure is logged and counted; the next tick tries again.
async fn drift_check(shared: Arc<Shared>, cluster: Arc<drift::Cluster>, envs: Arc<Vec<String>>) {
    let m = &shared.metrics;
    let desired = match shared.desired(&envs).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "drift check: cannot render the remote tip");
            // No environment is known when the model does not load; count under `env=""`.
            m.drift_errors
                .get_or_create(&DriftEnvLabels { env: String::new() })
                .inc();
            return;
        }
    };
    // Readiness series this check set, and environments whose series it leaves as they were.
    let (mut produced, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for d in &desired {
        let env = DriftEnvLabels {
            env: d.environment.clone(),
        };
        let live = match cluster.fetch(d).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(environment = %d.environment, error = %crate::output::with_causes(&e, ": "), "drift check failed");
                m.drift_errors.get_or_create(&env).inc();
                failed.insert(d.environment.clone());
                continue;
            }
        };
        if !shared.leader.load(Ordering::SeqCst) {
            // Leadership was lost while listing: the new leader exports.
            return;
        }
        let report = drift::check(d, &live, &cluster.label);
        drift::log_report(&report);
        let by_kind = report.by_kind();
        // Every compared kind gets a value, so a kind that stops drifting drops to 0.
        let kinds = DRIFT_KINDS
            .iter()
            .map(|k| k.to_string())
            .chain(by_kind.keys().cloned())
            .collect::<BTreeSet<_>>();
        for kind in kinds {
            let n = by_kind.get(&kind).copied().unwrap_or(0);
            m.set_drift_objects(&d.environment, &kind, n as i64);
        }
        let status = drift::status::evaluate(d, &live, &cluster.label);
        for r in &status.releases {
            m.release_ready
                .get_or_create(&ReleaseLabels {
                    env: d.environment.clone(),
                    release: r.name.clone(),
                })
                .set(i64::from(r.phase == drift::status::Phase::Ready));
            produced.insert((d.environment.clone(), r.name.clone()));
        }
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        m.drift_last_check.get_or_create(&env).set(unix);
        tracing::info!(environment = %d.environment, drifted = report.objects.len(), releases = status.releases.len(), "drift check done");
    }
    // A release (or environment) gone from Git must not stay exported as ready or not.
    m.retain_release_ready(produced, &failed);
    m.retain_drift_envs(&desired.iter().map(|d| d.environment.clone()).collect());
}

/// The kinds `drift::check` compares.
const DRIFT_KINDS: [&str; 5] = [
    "HelmRelease",
    "Deployment",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "Secret",
];

/// The daemon's endpoints.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz_handler))
        .route("/webhook", post(webhook_handler))
        // The handler reads (and bounds) the body itself, to count and answer oversized
        // ones instead of leaving them to the framework's limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn metrics_handler(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz_handler(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the watched images have not been read from Git yet\n",
        )
    }
}

/// The HTTP server's bounds, so that a client that opens connections and never finishes a
/// request (slowloris) cannot exhaust file descriptors or memory.
#[derive(Debug, Clone, Copy)]
struct HttpLimits {
    /// At most this many connections are open at once; more are closed as they are accepted.
    max_connections: usize,
    /// A request's headers must arrive within this time of the connection's first read.
    header_timeout: Duration,
    /// A webhook's body must arrive within this time of its headers (408 otherwise).
    body_timeout: Duration,
}

impl HttpLimits {
    /// Scrapers, probes and registries' webhooks need a handful of connections, and a push
    /// event is a few kilobytes.
    const DEFAULT: HttpLimits = HttpLimits {
        max_connections: 256,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
    };
}

/// A connection's service that notes when a request has arrived on it, so a header deadline
/// that closes an idle keep-alive connection (after serving) is told apart from one that
/// closes a connection that never completed a request.
#[derive(Clone)]
struct Noting<S> {
    inner: S,
    served: Arc<AtomicBool>,
}

impl<S: hyper::service::Service<R>, R> hyper::service::Service<R> for Noting<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, request: R) -> Self::Future {
        self.served.store(true, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// Serves `app` until `stop` changes: HTTP/1 with a deadline for a request's headers and a bound
/// on open connections (`limits`); the endpoints come back by themselves once a slow client
/// stops. Connections closed unserved are counted in `closed`.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limits: HttpLimits,
    closed: prometheus_client::metrics::family::Family<
        metrics::ConnectionLabels,
        prometheus_client::metrics::counter::Counter,
    >,
) {
    let count = move |reason: &str| {
        closed
            .get_or_create(&metrics::ConnectionLabels {
                reason: reason.into(),
            })
            .inc();
    };
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: pause instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Over the bound, dropping the stream closes it at once.
        let Ok(permit) = open.clone().try_acquire_owned() else {
            count("over_limit");
            continue;
        };
        let served = Arc::new(AtomicBool::new(false));
        let service = Noting {
            inner: hyper_util::service::TowerToHyperService::new(app.clone()),
            served: served.clone(),
        };
        let mut stop = stop.clone();
        let count = count.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    // The header deadline also closes keep-alive connections left idle after
                    // a request: only a connection that never completed one is a slow client.
                    if let Err(e) = result
                        && e.is_timeout()
                        && !served.load(Ordering::Relaxed)
                    {
                        count("header_timeout");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

async fn webhook_handler(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: axum::body::Body,
) -> impl IntoResponse {
    let count = |result: &str, reason: &str| {
        s.metrics
            .webhooks
            .get_or_create(&WebhookLabels {
                result: result.into(),
                reason: reason.into(),
            })
            .inc();
    };
    if !s.webhook.enabled() {
        count("rejected", "disabled");
        return (
            StatusCode::NOT_FOUND,
            "webhooks are off: start kairo with `--webhook-secret` or `--webhook-token`\n"
                .to_string(),
        );
    }
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is larger than {} bytes; a push event is a few kilobytes\n",
                webhook::MAX_BODY
            ),
        )
    };
    // A declared length over the bound is answered at once, not after waiting for the body.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > webhook::MAX_BODY as u64) {
        count("rejected", "too_large");
        return too_large();
    }
    let deadline = s.http.body_timeout;
    let Ok(body) = tokio::time::timeout(deadline, webhook::read_body(body)).await else {
        count("rejected", "too_slow");
        return (
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {}\n",
                humantime::format_duration(deadline)
            ),
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(webhook::BodyError::TooLarge) => {
            count("rejected", "too_large");
            return too_large();
        }
        Err(webhook::BodyError::Broken) => {
            count("rejected", "malformed");
            return (
                StatusCode::BAD_REQUEST,
                "the body could not be read\n".to_string(),
            );
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !s.webhook.check(header, query.as_deref(), &body) {
        count("rejected", "auth");
        return (
            StatusCode::UNAUTHORIZED,
            "the signature or token does not match\n".to_string(),
        );
    }
    let images = match webhook::images(&body) {
        Ok(i) => i,
        Err(e) => {
            count("rejected", "malformed");
            // The message quotes the payload: escaped, never echoed raw.
            return (
                StatusCode::BAD_REQUEST,
                format!("{}\n", webhook::escape_echoed(&e)),
            );
        }
    };
    if !s.leader.load(Ordering::SeqCst) {
        count("rejected", "not_leader");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is not the leader\n".to_string(),
        );
    }
    // Before the watched set is first read, every named image is passed on; the scan checks
    // again against the set it reads.
    let (images, unwatched): (Vec<ImageName>, Vec<ImageName>) = {
        let watched = s.watched_images.lock().expect("not poisoned");
        images
            .into_iter()
            .partition(|i| watched.as_ref().is_none_or(|w| w.contains(i)))
    };
    if images.is_empty() {
        count("ignored", "unwatched");
        let names: Vec<String> = unwatched
            .iter()
            .map(|i| webhook::escape_echoed(&i.to_string()))
            .collect();
        return (
            StatusCode::ACCEPTED,
            format!(
                "ignored: no service watches {}; nothing scanned\n",
                names.join(", ")
            ),
        );
    }
    // Named by the request (the watched set may not be read yet): escaped.
    let names: Vec<String> = images
        .iter()
        .map(|i| webhook::escape_echoed(&i.to_string()))
        .collect();
    if s.events.send(Event::Webhook(images)).await.is_err() {
        count("rejected", "shutting_down");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_string(),
        );
    }
    count("accepted", "scan");
    (
        StatusCode::ACCEPTED,
        format!("scanning {}\n", names.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(service: &str) -> ImageSpec {
        ImageSpec {
            service: service.into(),
            tag: "1.0.0".into(),
            digest: None,
        }
    }

    fn summary(environment: &str) -> WriteSummary {
        WriteSummary {
            environment: environment.into(),
            pushed_moves: 1,
            failed: false,
        }
    }

    #[test]
    fn a_requeued_write_waits_for_its_due_time_while_others_go_first() {
        let mut q = WriteQueue::default();
        let t0 = Instant::now();
        let (tx, mut rx) = oneshot::channel();
        let bumps = BTreeMap::from([
            ("production".to_string(), vec![spec("a")]),
            ("staging".to_string(), vec![spec("b")]),
        ]);
        q.add(bumps, tx, t0);
        let first = q.take_due(t0).unwrap();
        assert_eq!(first.environment, "production");
        // Its push was rejected: back in 2 s. The other environment is not held up by it.
        q.retry(first, t0 + Duration::from_secs(2));
        let second = q.take_due(t0).unwrap();
        assert_eq!(second.environment, "staging");
        q.done(second.batch, summary("staging"));
        assert!(rx.try_recv().is_err(), "one environment is still waiting");
        assert!(q.take_due(t0 + Duration::from_secs(1)).is_none());
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(2)));
        let again = q.take_due(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(again.environment, "production");
        q.done(again.batch, summary("production"));
        let all = rx.try_recv().unwrap();
        assert_eq!(all.len(), 2);
        assert!(q.pending.is_empty() && q.batches.is_empty());
    }

    /// The HTTP server with `limits` on a loopback port, as the daemon serves it (its router,
    /// a webhook token set), and its shared state.
    struct Server {
        addr: SocketAddr,
        shared: Arc<Shared>,
        _stop: tokio::sync::watch::Sender<bool>,
        _jobs: std::sync::mpsc::Receiver<Job>,
        _events: mpsc::Receiver<Event>,
    }

    impl Server {
        async fn start(limits: HttpLimits) -> Server {
            let (jobs, _jobs) = std::sync::mpsc::channel();
            let (events, _events) = mpsc::channel(8);
            let shared = Arc::new(Shared {
                metrics: Metrics::new(),
                client: Client::new(crate::registry::ClientConfig::default()).unwrap(),
                concurrency: 1,
                interval: None,
                jobs,
                events,
                webhook: webhook::Auth {
                    hmac_secret: None,
                    token: Some("t".into()),
                },
                ready: AtomicBool::new(true),
                leader: AtomicBool::new(true),
                last_scanned: Mutex::default(),
                watched_images: Mutex::new(None),
                http: limits,
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(serve(
                listener,
                router(shared.clone()),
                stop_rx,
                limits,
                shared.metrics.connections_closed.clone(),
            ));
            Server {
                addr,
                shared,
                _stop: stop,
                _jobs,
                _events,
            }
        }

        fn closed(&self, reason: &str) -> u64 {
            self.shared
                .metrics
                .connections_closed
                .get_or_create(&metrics::ConnectionLabels {
                    reason: reason.into(),
                })
                .get()
        }

        fn webhooks(&self, result: &str, reason: &str) -> u64 {
            self.shared
                .metrics
                .webhooks
                .get_or_create(&WebhookLabels {
                    result: result.into(),
                    reason: reason.into(),
                })
                .get()
        }

        /// A connection that has sent `first` and nothing more.
        async fn open(&self, first: &[u8]) -> tokio::net::TcpStream {
            use tokio::io::AsyncWriteExt;
            let mut c = tokio::net::TcpStream::connect(self.addr).await.unwrap();
            c.write_all(first).await.unwrap();
            c
        }
    }

    /// Everything the server sends until it closes the connection. The bound only turns a
    /// server that never cuts the client off into a failure instead of a hang.
    async fn until_closed(mut c: tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut buf))
            .await
            .expect("the server never closed the connection");
        // A reset (the server closed with our bytes unread) is a close too.
        if let Err(e) = read {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    const LONG: Duration = Duration::from_secs(3600);
    const SHORT: Duration = Duration::from_millis(50);

    /// Slowloris on the headers: a connection that sends part of a request's headers, or
    /// nothing, is closed at the header deadline and counted; a keep-alive connection left
    /// idle after a request is closed the same way but is no slow client, and not counted.
    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off_and_counted() {
        // Long enough that a loaded machine still delivers the idle connection's request in
        // time (its deadline starts at the first read, which may come before the request).
        let server = Server::start(HttpLimits {
            max_connections: 16,
            header_timeout: Duration::from_millis(500),
            body_timeout: LONG,
        })
        .await;
        let partial = server
            .open(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        let silent = server.open(b"").await;
        assert_eq!(until_closed(partial).await, "");
        assert_eq!(until_closed(silent).await, "");
        assert_eq!(server.closed("header_timeout"), 2);

        let idle = server
            .open(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let text = until_closed(idle).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(
            server.closed("header_timeout"),
            2,
            "an idle keep-alive close"
        );
        assert_eq!(server.closed("over_limit"), 0);
    }

    /// Slowloris on a webhook's body: answered 408 at the body deadline and counted.
    #[tokio::test]
    async fn a_webhook_body_that_never_ends_is_answered_408_and_counted() {
        let server = Server::start(HttpLimits {
            max_connections: 16,
            header_timeout: LONG,
            body_timeout: SHORT,
        })
        .await;
        let slow = server
            .open(b"POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n{")
            .await;
        let text = until_closed(slow).await;
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(
            text.contains("the body did not arrive within 50ms"),
            "{text}"
        );
        assert_eq!(server.webhooks("rejected", "too_slow"), 1);
        assert_eq!(server.closed("header_timeout"), 0);
    }

    /// A declared `Content-Length` over the bound is answered 413 at once: the body (never
    /// sent here) is not waited for, so no 408.
    #[tokio::test]
    async fn a_webhook_declaring_a_body_over_the_bound_is_answered_413_at_once() {
        let server = Server::start(HttpLimits {
            max_connections: 16,
            header_timeout: LONG,
            body_timeout: LONG,
        })
        .await;
        let big = server
            .open(
                format!(
                    "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{{",
                    webhook::MAX_BODY + 1
                )
                .as_bytes(),
            )
            .await;
        let text = until_closed(big).await;
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert_eq!(server.webhooks("rejected", "too_large"), 1);
        assert_eq!(server.webhooks("rejected", "too_slow"), 0);
    }

    /// Values a webhook names are echoed escaped: no NUL or bidi override reaches the reply,
    /// in a 400 (an invalid reference) or in a 202 (a host the parser accepts).
    #[tokio::test]
    async fn webhook_replies_escape_control_and_bidi_characters() {
        let server = Server::start(HttpLimits {
            max_connections: 16,
            header_timeout: LONG,
            body_timeout: LONG,
        })
        .await;
        for (body, status) in [
            (r#"{"image": "ev\u0000il\u202e@x"}"#, "400"),
            (r#"{"image": "ev\u0000il\u202e.example/acme/api"}"#, "202"),
        ] {
            let request = format!(
                "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let text = until_closed(server.open(request.as_bytes()).await).await;
            assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
            assert!(
                !text.contains('\0') && !text.contains('\u{202e}'),
                "{text:?}"
            );
            assert!(text.contains(r"ev\0il\u{202e}"), "{text}");
        }
    }

    /// Over the bound on open connections, a new connection is closed as it is accepted and
    /// counted; once the slow client goes, everyone is served again.
    #[tokio::test]
    async fn connections_over_the_bound_are_closed_and_counted() {
        let server = Server::start(HttpLimits {
            max_connections: 1,
            header_timeout: LONG,
            body_timeout: LONG,
        })
        .await;
        let hog = server.open(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        let refused = server
            .open(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        assert_eq!(until_closed(refused).await, "");
        assert_eq!(server.closed("over_limit"), 1);
        drop(hog);
        // The hog's connection ends when the server reads its close; until then a newcomer may
        // still be over the bound.
        let mut answered = String::new();
        for _ in 0..1000 {
            let c = server
                .open(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            answered = until_closed(c).await;
            if !answered.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        assert_eq!(server.closed("header_timeout"), 0);
    }

    #[test]
    fn an_empty_write_is_answered_at_once() {
        let mut q = WriteQueue::default();
        let (tx, mut rx) = oneshot::channel();
        q.add(BTreeMap::new(), tx, Instant::now());
        assert!(rx.try_recv().unwrap().is_empty());
        assert_eq!(q.next_due(), None);
    }
}
