//! `ferrocable-bench`: a load generator speaking the Action Cable protocol, for
//! measuring ferrocable (or any Action Cable server) on the local machine.
//!
//! Modes: `connect` (N idle clients: connect latency and server RSS per connection),
//! `broadcast` (N subscribers, M timestamped broadcasts: latency, time to all, loss),
//! `fanout-ceiling` (rising broadcast rate until loss or latency blows up),
//! `presence-churn` (clients joining and leaving PresenceChannel rooms), `soak`. Every
//! mode is bounded in time, talks to loopback addresses only, and prints one JSON line
//! of results on stdout; progress goes to stderr. See BENCHMARKS.md.
//!
//! This file holds the command line and the pieces every mode shares.

mod auth;
mod broadcast;
mod cable;
mod connect;
mod presence;
mod redis;
mod shards;
mod soak;
mod stats;
mod ws;

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tokio::time::Instant;

use cable::{ClientConfig, Failure};
use shards::Shards;

#[derive(Parser)]
#[command(
    name = "ferrocable-bench",
    about = "Action Cable load generator (loopback only); prints one JSON line of results"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Open N clients at a rate, hold them, report connect latency and server RSS per
    /// connection.
    Connect {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: connect::Args,
    },
    /// N subscribers on one stream, M timestamped broadcasts: per-delivery latency,
    /// time to all, deliveries/s, lost, duplicates.
    Broadcast {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: broadcast::Args,
    },
    /// Raise the broadcast rate step by step until loss or latency explodes.
    FanoutCeiling {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: broadcast::CeilingArgs,
    },
    /// Clients joining and leaving PresenceChannel rooms; join -> user_joined latency
    /// seen by the other members, lost and duplicated events.
    PresenceChurn {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: presence::Args,
    },
    /// Newcomers joining one big PresenceChannel room (members seeded in Redis,
    /// watchers on its stream): time to the whole roster, its bytes, the join's
    /// fan-out to every watcher, server CPU (scripts/bench-room.sh).
    PresenceRoom {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: presence::RoomArgs,
    },
    /// Print a Turbo `signed_stream_name` for a stream and a raw verifier key (for
    /// subscribing to Turbo::StreamsChannel from scripts).
    SignTurbo {
        /// The raw verifier key.
        #[arg(long)]
        key: String,
        /// The stream name.
        #[arg(long)]
        stream: String,
    },
    /// Hold N connections with churn for a long time; sample the server's RSS and
    /// report its drift and every error (scripts/soak.sh).
    Soak {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: soak::Args,
    },
}

/// Flags every mode takes.
#[derive(clap::Args, Clone)]
struct Common {
    /// The server's cable URL (ws://, loopback addresses only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/cable")]
    url: String,
    /// Spread clients over source addresses 127.0.0.1..127.0.0.K (Linux's port search
    /// slows down past ~14k connections from one address).
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
    /// Worker threads, each with its own current-thread runtime (default: CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Hard bound on the run; phases stop early and report `"truncated":true`.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
    /// The server's pid, to read its CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How clients authenticate.
    #[command(flatten)]
    auth: auth::AuthArgs,
    /// User id of the first client; client i is user first_user + i.
    #[arg(long, default_value_t = 1)]
    first_user: u64,
    /// Bound on each client step (TCP connect, upgrade, welcome, confirm), in ms.
    #[arg(long, default_value_t = 10_000)]
    step_timeout_ms: u64,
}

/// What a mode gets to run with.
pub struct Ctx {
    /// Client settings.
    pub client: ClientConfig,
    /// Worker runtimes.
    pub shards: Shards,
    /// For /proc readings.
    pub server_pid: Option<u32>,
    /// Client i is user `first_user + i`.
    pub first_user: u64,
    /// When the run must end.
    pub deadline: Instant,
}

impl Ctx {
    /// Time left before the deadline.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Counts failures by kind, as a JSON object.
pub fn failures_json(f: &std::collections::BTreeMap<Failure, u64>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in f {
        m.insert(k.name().to_owned(), json!(v));
    }
    Value::Object(m)
}

static PRINTED: AtomicBool = AtomicBool::new(false);

fn print_once(v: &Value) {
    if !PRINTED.swap(true, Ordering::SeqCst) {
        println!("{v}");
    }
}

/// Entry point.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, common) = match &cli.mode {
        Mode::SignTurbo { key, stream } => {
            println!("{}", auth::turbo_signed_name(key.as_bytes(), stream));
            return ExitCode::SUCCESS;
        }
        Mode::Connect { common, .. } => ("connect", common),
        Mode::Broadcast { common, .. } => ("broadcast", common),
        Mode::FanoutCeiling { common, .. } => ("fanout-ceiling", common),
        Mode::PresenceChurn { common, .. } => ("presence-churn", common),
        Mode::PresenceRoom { common, .. } => ("presence-room", common),
        Mode::Soak { common, .. } => ("soak", common),
    };
    stats::now_ns(); // start the shared clock
    let fail = |e: String| {
        print_once(&json!({"mode": name, "error": e}));
        ExitCode::FAILURE
    };
    let target = match ws::Target::parse(&common.url) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if common.source_ips == 0 {
        return fail("--source-ips must be at least 1".into());
    }
    let nofile = stats::raise_nofile();
    let threads = common.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let sources: Vec<IpAddr> = if target.addr.is_ipv4() {
        (1..=common.source_ips)
            .map(|k| IpAddr::from([127, 0, 0, k]))
            .collect()
    } else {
        vec![target.addr.ip()]
    };

    // The watchdog: whatever happens, the process ends soon after --max-seconds.
    let max = Duration::from_secs(common.max_seconds);
    let mode_name = name.to_owned();
    std::thread::spawn(move || {
        std::thread::sleep(max + Duration::from_secs(15));
        print_once(
            &json!({"mode": mode_name, "error": "watchdog: run exceeded --max-seconds + 15 s"}),
        );
        std::process::exit(3);
    });

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("runtime: {e}")),
    };
    let credentials = match auth::Credentials::from_args(&common.auth) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let result = rt.block_on(async {
        let ctx = Ctx {
            client: ClientConfig {
                target: target.clone(),
                credentials,
                sources: Arc::new(sources),
                step_timeout: Duration::from_millis(common.step_timeout_ms),
            },
            shards: Shards::start(threads),
            server_pid: common.server_pid,
            first_user: common.first_user,
            deadline: Instant::now() + max,
        };
        let r = match &cli.mode {
            Mode::Connect { args, .. } => connect::run(&ctx, args).await,
            Mode::Broadcast { args, .. } => broadcast::run(&ctx, args).await,
            Mode::FanoutCeiling { args, .. } => broadcast::ceiling(&ctx, args).await,
            Mode::PresenceChurn { args, .. } => presence::run(&ctx, args).await,
            Mode::PresenceRoom { args, .. } => presence::run_room(&ctx, args).await,
            Mode::Soak { args, .. } => soak::run(&ctx, args).await,
            Mode::SignTurbo { .. } => Err("unreachable: handled before the runtime".into()),
        };
        // Connections close as the shards stop.
        drop(ctx);
        r
    });
    match result {
        Ok(body) => {
            let mut out = json!({
                "mode": name,
                "url": common.url,
                "threads": threads,
                "source_ips": common.source_ips,
                "nofile_limit": nofile,
                "auth": format!("{:?}", common.auth.auth),
            });
            if let (Value::Object(o), Value::Object(b)) = (&mut out, body) {
                o.extend(b);
            }
            print_once(&out);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Logs progress to stderr.
macro_rules! progress {
    ($($t:tt)*) => { eprintln!("[ferrocable-bench] {}", format_args!($($t)*)) };
}
pub(crate) use progress;
