//! `soak`: hold about N connections for a long time with churn (each slot reconnects
//! after a varying lifetime, so about `--churn` connections per second close and
//! reopen), sample the server's RSS periodically, and report the RSS drift between
//! the end of the ramp-up and the end of the run, and every error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::cable::{self, Failure};
use super::stats::{proc_rss_kb, round1};
use super::ws::Frame;
use super::{failures_json, progress, Ctx};

/// `soak` flags.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Connections held at once (slots).
    #[arg(long, default_value_t = 500)]
    n: usize,
    /// Seconds to run (bounded by --max-seconds).
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Connections closed and reopened per second, across all slots.
    #[arg(long, default_value_t = 20.0)]
    churn: f64,
    /// Seconds over which the N connections are first opened.
    #[arg(long, default_value_t = 5.0)]
    ramp: f64,
    /// Seconds between two RSS samples.
    #[arg(long, default_value_t = 5.0)]
    sample_every: f64,
    /// Subscribe each connection to this identifier (`{room}` is `slot / room-size`).
    #[arg(long)]
    identifier: Option<String>,
    /// Slots per `{room}`.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
}

/// A number in [0.5, 1.5) from `(slot, cycle)`, to spread lifetimes.
fn jitter(slot: usize, cycle: u64) -> f64 {
    let x = (slot as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(cycle.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let x = (x ^ (x >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    0.5 + (x >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Default)]
struct Counts {
    connects: AtomicU64,
    closes: AtomicU64,
    server_disconnects: AtomicU64,
}

/// Runs the mode.
///
/// # Errors
/// Never in practice; failures are counted in the results.
pub async fn run(ctx: &Ctx, a: &Args) -> Result<Value, String> {
    let pid = ctx.server_pid;
    let t0 = Instant::now();
    let end = (t0 + Duration::from_secs_f64(a.seconds.max(1.0))).min(ctx.deadline);
    let rss_start = pid.and_then(proc_rss_kb);
    // Mean lifetime so that N slots churn `churn` connections a second.
    let mean_life = if a.churn > 0.0 {
        a.n as f64 / a.churn
    } else {
        f64::INFINITY
    };
    let counts = Arc::new(Counts::default());
    let (tx, mut rx) = mpsc::unbounded_channel::<Failure>();
    let mut tasks = Vec::with_capacity(a.n);
    for slot in 0..a.n {
        let start_at = t0 + Duration::from_secs_f64(a.ramp.max(0.0) * slot as f64 / a.n as f64);
        let identifier = a
            .identifier
            .as_ref()
            .map(|id| id.replace("{room}", &(slot / a.room_size.max(1)).to_string()));
        tasks.push(ctx.shards.spawn(
            slot,
            slot_loop(
                ctx.client.clone(),
                slot,
                ctx.first_user + slot as u64,
                identifier,
                start_at,
                end,
                mean_life,
                counts.clone(),
                tx.clone(),
            ),
        ));
    }
    drop(tx);

    let mut failures: BTreeMap<Failure, u64> = BTreeMap::new();
    let mut samples: Vec<Value> = Vec::new();
    let every = Duration::from_secs_f64(a.sample_every.max(0.5));
    let mut next_sample = t0 + Duration::from_secs_f64(a.ramp.max(0.0)) + every;
    let mut after_ramp: Option<u64> = None;
    loop {
        let wake = next_sample.min(end);
        tokio::select! {
            f = rx.recv() => match f {
                Some(f) => *failures.entry(f).or_default() += 1,
                None => break,
            },
            _ = tokio::time::sleep_until(wake) => {
                if Instant::now() >= end {
                    break;
                }
                let rss = pid.and_then(proc_rss_kb);
                after_ramp = after_ramp.or(rss);
                let connects = counts.connects.load(Ordering::Relaxed);
                progress!(
                    "soak: t={:.0}s rss={:?} KB connects={connects} errors={}",
                    t0.elapsed().as_secs_f64(),
                    rss,
                    failures.values().sum::<u64>()
                );
                samples.push(json!({
                    "t": round1(t0.elapsed().as_secs_f64()),
                    "rss_kb": rss,
                    "connects": connects,
                }));
                next_sample += every;
            }
        }
    }
    let rss_end = pid.and_then(proc_rss_kb);
    for t in tasks {
        let _ = t.await;
    }
    while let Ok(f) = rx.try_recv() {
        *failures.entry(f).or_default() += 1;
    }
    // Let the server finish its teardowns, then read what the closed connections left.
    tokio::time::sleep(Duration::from_secs(2).min(ctx.left())).await;
    let rss_closed = pid.and_then(proc_rss_kb);
    let drift = match (after_ramp, rss_end) {
        (Some(a), Some(e)) => Some(e as i64 - a as i64),
        _ => None,
    };
    Ok(json!({
        "n": a.n,
        "seconds": a.seconds,
        "churn_per_s": a.churn,
        "identifier": a.identifier,
        "connects": counts.connects.load(Ordering::Relaxed),
        "closes_by_client": counts.closes.load(Ordering::Relaxed),
        "server_disconnects": counts.server_disconnects.load(Ordering::Relaxed),
        "errors": failures.values().sum::<u64>(),
        "failures": failures_json(&failures),
        "server_rss_start_kb": rss_start,
        "server_rss_after_ramp_kb": after_ramp,
        "server_rss_end_kb": rss_end,
        "server_rss_after_close_kb": rss_closed,
        "rss_drift_kb": drift,
        "rss_drift_pct": match (drift, after_ramp) {
            (Some(d), Some(a)) if a > 0 => json!(round1(d as f64 * 100.0 / a as f64)),
            _ => Value::Null,
        },
        "samples": samples,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn slot_loop(
    cfg: cable::ClientConfig,
    slot: usize,
    user: u64,
    identifier: Option<String>,
    start_at: Instant,
    end: Instant,
    mean_life: f64,
    counts: Arc<Counts>,
    failures: mpsc::UnboundedSender<Failure>,
) {
    tokio::time::sleep_until(start_at).await;
    let mut cycle = 0u64;
    while Instant::now() < end {
        cycle += 1;
        let mut ws = match cable::open(&cfg, slot, user).await {
            Ok(ws) => ws,
            Err(f) => {
                let _ = failures.send(f);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        counts.connects.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = &identifier {
            if let Err(f) = cable::subscribe(&mut ws, id, cfg.step_timeout).await {
                let _ = failures.send(f);
                continue;
            }
        }
        // The first lifetime is spread over the whole mean so slots do not churn
        // together; later ones vary around the mean.
        let life = if cycle == 1 {
            mean_life * (jitter(slot, 0) - 0.5)
        } else {
            mean_life * jitter(slot, cycle)
        };
        let until = if life.is_finite() {
            (Instant::now() + Duration::from_secs_f64(life)).min(end)
        } else {
            end
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {
                    counts.closes.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                f = ws.next() => match f {
                    Ok(Some(Frame::Text(t))) => {
                        if cable::classify(t) == cable::Kind::Disconnect {
                            counts.server_disconnects.fetch_add(1, Ordering::Relaxed);
                            let _ = failures.send(Failure::Rejected);
                            break;
                        }
                    }
                    Ok(Some(Frame::Pong(_))) => {}
                    Ok(Some(Frame::Close(_))) | Ok(None) | Err(_) => {
                        counts.server_disconnects.fetch_add(1, Ordering::Relaxed);
                        let _ = failures.send(Failure::Io);
                        break;
                    }
                }
            }
        }
        // Dropping the socket closes it abruptly (no close frame), the harder case
        // for the server's cleanup.
        drop(ws);
    }
}
