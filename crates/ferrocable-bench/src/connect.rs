//! `connect`: open N clients at a steady rate (each a different user), wait for each
//! welcome (and confirm, given an identifier), hold them all, and read the server's
//! RSS before and after to get memory per connection.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cable::{self, Failure};
use super::stats::{now_ns, proc_rss_kb, round1, CpuMark, Histogram};
use super::ws::Frame;
use super::{failures_json, progress, Ctx};

/// `connect` flags.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Clients to open.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// New connections per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds to hold all clients once established.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Subscribe each client to this identifier and wait for the confirm. `{room}` is
    /// replaced by `i / room-size` (a single shared presence room costs O(N^2): each
    /// join is broadcast to every member with the full member list).
    #[arg(long)]
    identifier: Option<String>,
    /// Clients per `{room}`.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
}

type Established = Result<(u64, Option<u64>), Failure>;

/// Runs the mode.
///
/// # Errors
/// Never in practice; failures are counted in the results.
pub async fn run(ctx: &Ctx, a: &Args) -> Result<Value, String> {
    let pid = ctx.server_pid;
    let rss_start = pid.and_then(proc_rss_kb);
    let (tx, mut rx) = mpsc::unbounded_channel::<Established>();
    let hold = CancellationToken::new();
    let cpu0 = CpuMark::now(pid);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(a.n);
    let mut truncated = false;

    let mut welcome = Histogram::default();
    let mut confirm = Histogram::default();
    let mut failures: BTreeMap<Failure, u64> = BTreeMap::new();
    let mut done = 0usize;
    let mut last_ok = t0;
    let mut record = |r: Established, done: &mut usize, last_ok: &mut Instant| {
        *done += 1;
        match r {
            Ok((w, c)) => {
                welcome.record(w);
                if let Some(c) = c {
                    confirm.record(c);
                }
                *last_ok = Instant::now();
            }
            Err(f) => *failures.entry(f).or_default() += 1,
        }
    };

    let mut next_report = t0 + Duration::from_secs(1);
    for i in 0..a.n {
        let at = t0 + Duration::from_secs_f64(i as f64 / a.rate.max(0.001));
        if at >= ctx.deadline {
            truncated = true;
            break;
        }
        tokio::time::sleep_until(at).await;
        while let Ok(r) = rx.try_recv() {
            record(r, &mut done, &mut last_ok);
        }
        if Instant::now() >= next_report {
            progress!("connect: started {i}/{}, finished {done}", a.n);
            next_report += Duration::from_secs(1);
        }
        let identifier = a
            .identifier
            .as_ref()
            .map(|id| id.replace("{room}", &(i / a.room_size.max(1)).to_string()));
        let cfg = ctx.client.clone();
        let user = ctx.first_user + i as u64;
        tasks.push(ctx.shards.spawn(
            i,
            client(cfg, i, user, identifier, tx.clone(), hold.clone()),
        ));
    }
    let started = tasks.len();
    drop(tx);
    while done < started {
        match tokio::time::timeout_at(ctx.deadline, rx.recv()).await {
            Ok(Some(r)) => record(r, &mut done, &mut last_ok),
            Ok(None) => break,
            Err(_) => {
                truncated = true;
                break;
            }
        }
    }
    let established = welcome.count();
    let connect_secs = last_ok.duration_since(t0).as_secs_f64().max(1e-9);
    let cpu_connect = cpu0.since(pid, established, "connect");
    let rss_held = pid.and_then(proc_rss_kb);
    progress!(
        "connect: {established} established, {} failed; holding {} s",
        started as u64 - established,
        a.hold
    );
    let cpu_hold0 = CpuMark::now(pid);
    let hold_for = Duration::from_secs_f64(a.hold.max(0.0)).min(ctx.left());
    tokio::time::sleep(hold_for).await;
    let rss_end = pid.and_then(proc_rss_kb);
    let cpu_hold = cpu_hold0.since(pid, 0, "");
    hold.cancel();
    let mut alive = 0u64;
    let mut frames = 0u64;
    for t in tasks {
        if let Ok(h) = t.await {
            alive += u64::from(h.alive);
            frames += h.frames;
        }
    }

    let per_conn = |rss: Option<u64>| -> Value {
        match (rss_start, rss) {
            (Some(s), Some(e)) if established > 0 => {
                json!(round1((e as f64 - s as f64) * 1024.0 / established as f64))
            }
            _ => Value::Null,
        }
    };
    Ok(json!({
        "n": a.n,
        "rate": a.rate,
        "identifier": a.identifier,
        "room_size": a.identifier.as_ref().map(|_| a.room_size),
        "started": started,
        "established": established,
        "failures": failures_json(&failures),
        "connects_per_s": round1(established as f64 / connect_secs),
        "connect_to_welcome": welcome.summary(),
        "connect_to_confirm": confirm.summary(),
        "held_alive_at_end": alive,
        "frames_received_while_held": frames,
        "server_rss_start_kb": rss_start,
        "server_rss_held_kb": rss_held,
        "server_rss_end_kb": rss_end,
        "server_rss_per_conn_bytes": per_conn(rss_end),
        "server_rss_per_conn_bytes_at_held": per_conn(rss_held),
        "connect_phase": cpu_connect,
        "hold_phase": cpu_hold,
        "truncated": truncated,
    }))
}

struct Held {
    alive: bool,
    frames: u64,
}

async fn client(
    cfg: cable::ClientConfig,
    i: usize,
    user: u64,
    identifier: Option<String>,
    tx: mpsc::UnboundedSender<Established>,
    hold: CancellationToken,
) -> Held {
    let dead = Held {
        alive: false,
        frames: 0,
    };
    let start = now_ns();
    let mut ws = match cable::open(&cfg, i, user).await {
        Ok(ws) => ws,
        Err(f) => {
            let _ = tx.send(Err(f));
            return dead;
        }
    };
    let welcomed = now_ns() - start;
    let mut confirmed = None;
    if let Some(id) = identifier {
        if let Err(f) = cable::subscribe(&mut ws, &id, cfg.step_timeout).await {
            let _ = tx.send(Err(f));
            return dead;
        }
        confirmed = Some(now_ns() - start);
    }
    let _ = tx.send(Ok((welcomed, confirmed)));
    drop(tx);
    let mut frames = 0;
    loop {
        tokio::select! {
            biased;
            _ = hold.cancelled() => return Held { alive: true, frames },
            f = ws.next() => match f {
                Ok(Some(Frame::Text(t))) => {
                    frames += 1;
                    if cable::classify(t) == cable::Kind::Disconnect {
                        return Held { alive: false, frames };
                    }
                }
                Ok(Some(Frame::Pong(_))) => {}
                _ => return Held { alive: false, frames },
            }
        }
    }
}
