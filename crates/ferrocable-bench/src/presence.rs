//! `presence-churn`: clients joining and leaving PresenceChannel rooms; and
//! `presence-room`: one newcomer at a time joining a room of thousands.
//!
//! Each room has a few *observers*, subscribed before the churn starts and until
//! after it ends; every other client *churns*: subscribe, hold, unsubscribe, pause,
//! again, always in the same room. A churner notes the time of its k-th subscribe
//! and unsubscribe; an observer matches the k-th `user_joined` (`user_left`) it sees
//! for that user to it. At the end every churner leaves and passes a ping barrier
//! (the server has handled its unsubscribe), then every observer does (all events
//! queued for it have arrived), so the counts are exact: each observer must see each
//! join and each leave exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cable::{self, int_after, Failure, Kind};
use super::stats::{now_ns, round1, CpuMark, Histogram};
use super::ws::{find, Frame, Ws};
use super::{failures_json, progress, Ctx};

/// `presence-churn` flags.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Clients in all (observers included), each a different user.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Observers per room (subscribed throughout).
    #[arg(long, default_value_t = 2)]
    observers_per_room: usize,
    /// Seconds of churn.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Mean time a churner stays subscribed (uniform in 0.5x..1.5x).
    #[arg(long, default_value_t = 500)]
    hold_ms: u64,
    /// Mean pause between a churner's leave and its next join.
    #[arg(long, default_value_t = 250)]
    gap_ms: u64,
    /// Clients connected per second during set-up.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
}

fn identifier(room: usize) -> String {
    format!(
        r#"{{"channel":"PresenceChannel","room_id":"{}"}}"#,
        room + 1
    )
}

/// Join and leave send times, per client index (churners only).
struct Times {
    joins: Vec<Mutex<Vec<u64>>>,
    leaves: Vec<Mutex<Vec<u64>>>,
}

/// `(joined, user id)` of a presence event frame.
fn parse_event(t: &[u8]) -> Option<(bool, u64)> {
    const ACTION: &[u8] = b"\"action\":\"user_";
    let at = find(t, ACTION)? + ACTION.len();
    let joined = if t[at..].starts_with(b"joined\"") {
        true
    } else if t[at..].starts_with(b"left\"") {
        false
    } else {
        return None;
    };
    let (user, _) = int_after(&t[at..], b"\"user\":{\"id\":")?;
    Some((joined, user))
}

/// What an observer saw.
#[derive(Default)]
struct Observed {
    room: usize,
    alive: bool,
    /// Per client index: (user_joined count, user_left count).
    seen: BTreeMap<usize, (u64, u64)>,
    join_latency: Histogram,
    leave_latency: Histogram,
    frames: u64,
    failure: Option<Failure>,
}

struct Roles {
    first_user: u64,
    first_churner: usize,
    clients: usize,
}

async fn observer(
    cfg: cable::ClientConfig,
    i: usize,
    room: usize,
    roles: Arc<Roles>,
    times: Arc<Times>,
    ready: mpsc::UnboundedSender<Result<(), Failure>>,
    barrier: CancellationToken,
) -> Observed {
    let mut out = Observed {
        room,
        ..Observed::default()
    };
    let user = roles.first_user + i as u64;
    let mut ws = match cable::open_subscribed(&cfg, i, user, &identifier(room)).await {
        Ok(ws) => ws,
        Err(f) => {
            out.failure = Some(f);
            let _ = ready.send(Err(f));
            return out;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let mut pinged = false;
    loop {
        let f = tokio::select! {
            biased;
            _ = barrier.cancelled(), if !pinged => {
                pinged = true;
                if ws.send_ping(b"barrier").await.is_err() {
                    return out;
                }
                continue;
            }
            f = ws.next() => f,
        };
        match f {
            Ok(Some(Frame::Text(t))) => {
                out.frames += 1;
                match cable::classify(t) {
                    Kind::Message => {
                        let now = now_ns();
                        let Some((joined, user)) = parse_event(t) else {
                            continue;
                        };
                        let Some(idx) = user.checked_sub(roles.first_user).map(|x| x as usize)
                        else {
                            continue;
                        };
                        if idx < roles.first_churner || idx >= roles.clients {
                            continue; // another observer, joining before the churn
                        }
                        let seen = out.seen.entry(idx).or_default();
                        let (k, list, hist) = if joined {
                            (&mut seen.0, &times.joins[idx], &mut out.join_latency)
                        } else {
                            (&mut seen.1, &times.leaves[idx], &mut out.leave_latency)
                        };
                        if let Some(&sent) = list.lock().get(*k as usize) {
                            hist.record(now.saturating_sub(sent));
                        }
                        *k += 1;
                    }
                    Kind::Disconnect => return out,
                    _ => {}
                }
            }
            Ok(Some(Frame::Pong(p))) if p == b"barrier" => {
                out.alive = true;
                return out;
            }
            Ok(Some(Frame::Pong(_))) => {}
            _ => return out,
        }
    }
}

/// What a churner did.
#[derive(Default)]
struct Churned {
    frames: u64,
    failure: Option<Failure>,
    barrier_passed: bool,
}

/// Reads (and counts) frames until `until` or `stop`; false if the connection ended.
async fn read_until(
    ws: &mut Ws,
    until: Instant,
    stop: &CancellationToken,
    frames: &mut u64,
) -> bool {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return true,
            _ = tokio::time::sleep_until(until) => return true,
            f = ws.next() => match f {
                Ok(Some(Frame::Text(t))) => {
                    *frames += 1;
                    if cable::classify(t) == Kind::Disconnect {
                        return false;
                    }
                }
                Ok(Some(Frame::Pong(_))) => {}
                _ => return false,
            }
        }
    }
}

// A task's inputs, passed once; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn churner(
    cfg: cable::ClientConfig,
    i: usize,
    room: usize,
    roles: Arc<Roles>,
    times: Arc<Times>,
    hold: Duration,
    gap: Duration,
    ready: mpsc::UnboundedSender<Result<(), Failure>>,
    go: CancellationToken,
    stop: CancellationToken,
) -> Churned {
    let mut out = Churned::default();
    let mut ws = match cable::open(&cfg, i, roles.first_user + i as u64).await {
        Ok(ws) => ws,
        Err(f) => {
            out.failure = Some(f);
            let _ = ready.send(Err(f));
            return out;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let id = identifier(room);
    let subscribe = cable::command("subscribe", &id, None);
    let unsubscribe = cable::command("unsubscribe", &id, None);
    let mut rng = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut jitter = |d: Duration| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        d.mul_f64(0.5 + (rng % 1000) as f64 / 1000.0)
    };
    if !read_until(
        &mut ws,
        Instant::now() + Duration::from_secs(3600),
        &go,
        &mut 0,
    )
    .await
    {
        out.failure = Some(Failure::Rejected);
        return out;
    }
    // Spread the first joins over one cycle.
    let first = Instant::now() + jitter(hold + gap) / 2;
    if !read_until(&mut ws, first, &stop, &mut out.frames).await {
        out.failure = Some(Failure::Rejected);
        return out;
    }
    while !stop.is_cancelled() {
        times.joins[i].lock().push(now_ns());
        if ws.send_text(&subscribe).await.is_err() {
            out.failure = Some(Failure::Io);
            return out;
        }
        let confirmed = cable::wait_for(&mut ws, cfg.step_timeout, |k| match k {
            Kind::Confirm => Some(Ok(())),
            Kind::Reject => Some(Err(Failure::SubscriptionRejected)),
            Kind::Disconnect => Some(Err(Failure::Rejected)),
            _ => None,
        })
        .await;
        if let Err(f) = confirmed {
            out.failure = Some(f);
            return out;
        }
        let held = read_until(
            &mut ws,
            Instant::now() + jitter(hold),
            &stop,
            &mut out.frames,
        )
        .await;
        times.leaves[i].lock().push(now_ns());
        if !held || ws.send_text(&unsubscribe).await.is_err() {
            out.failure = Some(Failure::Rejected);
            return out;
        }
        if !read_until(
            &mut ws,
            Instant::now() + jitter(gap),
            &stop,
            &mut out.frames,
        )
        .await
        {
            out.failure = Some(Failure::Rejected);
            return out;
        }
    }
    // Barrier: the pong comes after the server handled our unsubscribe.
    if ws.send_ping(b"barrier").await.is_ok() {
        let deadline = Instant::now() + cfg.step_timeout;
        while let Ok(Ok(Some(f))) = tokio::time::timeout_at(deadline, ws.next()).await {
            match f {
                Frame::Pong(p) if p == b"barrier" => {
                    out.barrier_passed = true;
                    break;
                }
                Frame::Close(_) => break,
                _ => out.frames += 1,
            }
        }
    }
    out
}

/// Runs `presence-churn`.
///
/// # Errors
/// When set-up fails or the flags are inconsistent.
pub async fn run(ctx: &Ctx, a: &Args) -> Result<Value, String> {
    let rooms = a.rooms.max(1);
    let observers = rooms * a.observers_per_room;
    if a.clients <= observers {
        return Err(format!(
            "--clients ({}) must exceed rooms x observers-per-room ({observers})",
            a.clients
        ));
    }
    let roles = Arc::new(Roles {
        first_user: ctx.first_user,
        first_churner: observers,
        clients: a.clients,
    });
    let times = Arc::new(Times {
        joins: (0..a.clients).map(|_| Mutex::new(Vec::new())).collect(),
        leaves: (0..a.clients).map(|_| Mutex::new(Vec::new())).collect(),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let go = CancellationToken::new();
    let stop = CancellationToken::new();
    let barrier = CancellationToken::new();
    let mut obs_tasks = Vec::new();
    let mut churn_tasks = Vec::new();
    let t0 = Instant::now();
    for i in 0..a.clients {
        let at = t0 + Duration::from_secs_f64(i as f64 / a.connect_rate.max(0.001));
        if at >= ctx.deadline {
            return Err("ran out of time connecting".into());
        }
        tokio::time::sleep_until(at).await;
        let room = i % rooms;
        if i < observers {
            obs_tasks.push(ctx.shards.spawn(
                i,
                observer(
                    ctx.client.clone(),
                    i,
                    room,
                    roles.clone(),
                    times.clone(),
                    tx.clone(),
                    barrier.clone(),
                ),
            ));
        } else {
            churn_tasks.push(ctx.shards.spawn(
                i,
                churner(
                    ctx.client.clone(),
                    i,
                    room,
                    roles.clone(),
                    times.clone(),
                    Duration::from_millis(a.hold_ms),
                    Duration::from_millis(a.gap_ms),
                    tx.clone(),
                    go.clone(),
                    stop.clone(),
                ),
            ));
        }
    }
    drop(tx);
    let (ready, failures) = cable::count_ready(&mut rx, ctx.deadline).await;
    progress!(
        "presence-churn: {ready}/{} clients ready; churning for {} s",
        a.clients,
        a.duration
    );

    let cpu = CpuMark::now(ctx.server_pid);
    let churn_start = Instant::now();
    go.cancel();
    let churn_for = Duration::from_secs_f64(a.duration.max(0.0))
        .min(ctx.left().saturating_sub(Duration::from_secs(5)));
    tokio::time::sleep(churn_for).await;
    stop.cancel();
    let mut frames = 0;
    let mut churner_failures = BTreeMap::new();
    let mut barriers_missed = 0;
    for t in churn_tasks {
        match tokio::time::timeout_at(ctx.deadline, t).await {
            Ok(Ok(c)) => {
                frames += c.frames;
                if let Some(f) = c.failure {
                    *churner_failures.entry(f).or_default() += 1;
                } else if !c.barrier_passed {
                    barriers_missed += 1;
                }
            }
            _ => barriers_missed += 1,
        }
    }
    let churn_s = churn_start.elapsed().as_secs_f64();
    barrier.cancel();
    let mut join_latency = Histogram::default();
    let mut leave_latency = Histogram::default();
    let (mut expected, mut observed, mut lost, mut dups) = (0u64, 0u64, 0u64, 0u64);
    let mut observers_alive = 0;
    for t in obs_tasks {
        let Ok(Ok(o)) = tokio::time::timeout_at(ctx.deadline, t).await else {
            continue;
        };
        frames += o.frames;
        if o.failure.is_some() {
            continue;
        }
        if !o.alive {
            barriers_missed += 1;
        } else {
            observers_alive += 1;
        }
        join_latency.merge(&o.join_latency);
        leave_latency.merge(&o.leave_latency);
        for idx in (observers..a.clients).filter(|i| i % rooms == o.room) {
            let (sj, sl) = o.seen.get(&idx).copied().unwrap_or((0, 0));
            let j = times.joins[idx].lock().len() as u64;
            let l = times.leaves[idx].lock().len() as u64;
            expected += j + l;
            observed += sj + sl;
            lost += j.saturating_sub(sj) + l.saturating_sub(sl);
            dups += sj.saturating_sub(j) + sl.saturating_sub(l);
        }
    }
    let joins: u64 = times.joins.iter().map(|v| v.lock().len() as u64).sum();
    let leaves: u64 = times.leaves.iter().map(|v| v.lock().len() as u64).sum();
    Ok(json!({
        "rooms": rooms,
        "clients": a.clients,
        "observers": observers,
        "observers_alive": observers_alive,
        "churners": a.clients - observers,
        "setup_failures": failures_json(&failures),
        "churner_failures": failures_json(&churner_failures),
        "barriers_missed": barriers_missed,
        "churn_s": round1(churn_s),
        "joins": joins,
        "leaves": leaves,
        "joins_per_s": round1(joins as f64 / churn_s.max(1e-9)),
        "expected_events": expected,
        "observed_events": observed,
        "lost": lost,
        "duplicates": dups,
        "join_to_user_joined": join_latency.summary(),
        "leave_to_user_left": leave_latency.summary(),
        "frames_received": frames,
        "cpu": cpu.since(ctx.server_pid, frames, "frame"),
        "truncated": Instant::now() >= ctx.deadline,
    }))
}

/// `presence-room` flags: joining one big room.
#[derive(clap::Args, Clone)]
pub struct RoomArgs {
    /// Members already in the room (ids 1..=N, seeded in Redis by the caller, see
    /// scripts/bench-room.sh): the newcomer's roster.
    #[arg(long, default_value_t = 10_000)]
    members: u64,
    /// Clients listening on the room's stream through `--watch-channel` (a declared
    /// channel streaming `presence_room_{room_id}`), as the members' browsers would,
    /// without joining (joins one by one would cost what the room's fill costs).
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// Newcomers, one after another (each leaves before the next joins).
    #[arg(long, default_value_t = 3)]
    joins: usize,
    /// The room id.
    #[arg(long, default_value = "big")]
    room: String,
    /// The declared channel the watchers subscribe to.
    #[arg(long, default_value = "RoomWatchChannel")]
    watch_channel: String,
    /// Watchers connected per second during set-up.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
}

/// A watcher: confirms its subscription, then reports every presence event about a
/// newcomer (`user > members`) as `(joined, user, at)` until the connection ends.
async fn watcher(
    cfg: cable::ClientConfig,
    i: usize,
    user: u64,
    identifier: String,
    newcomers_after: u64,
    ready: mpsc::UnboundedSender<Result<(), Failure>>,
    seen: mpsc::UnboundedSender<(bool, u64, u64)>,
) {
    let mut ws = match cable::open_subscribed(&cfg, i, user, &identifier).await {
        Ok(ws) => ws,
        Err(f) => {
            let _ = ready.send(Err(f));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    while let Ok(Some(f)) = ws.next().await {
        if let Frame::Text(t) = f {
            match parse_event(t) {
                Some((joined, u)) if u > newcomers_after => {
                    let _ = seen.send((joined, u, now_ns()));
                }
                _ if cable::classify(t) == Kind::Disconnect => return,
                _ => {}
            }
        }
    }
}

/// Waits until `n` watchers reported `(joined, user)`; returns when the last did (ns),
/// or `None` past the deadline.
async fn all_saw(
    seen: &mut mpsc::UnboundedReceiver<(bool, u64, u64)>,
    n: usize,
    joined: bool,
    user: u64,
    deadline: Instant,
) -> Option<u64> {
    let (mut count, mut last) = (0, 0);
    while count < n {
        let (j, u, at) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .ok()??;
        if (j, u) == (joined, user) {
            count += 1;
            last = last.max(at);
        }
    }
    Some(last)
}

fn ms(from: u64, to: u64) -> f64 {
    round1(to.saturating_sub(from) as f64 / 1e6)
}

/// Runs `presence-room`: the cost of joining a room of `--members`.
///
/// # Errors
/// When set-up fails, or a newcomer is not admitted whole.
pub async fn run_room(ctx: &Ctx, a: &RoomArgs) -> Result<Value, String> {
    let watch_id = serde_json::json!({"channel": a.watch_channel, "room_id": a.room}).to_string();
    let presence_id =
        serde_json::json!({"channel": "PresenceChannel", "room_id": a.room}).to_string();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    for i in 0..a.watchers {
        let at = t0 + Duration::from_secs_f64(i as f64 / a.connect_rate.max(0.001));
        if at >= ctx.deadline {
            return Err("ran out of time connecting".into());
        }
        tokio::time::sleep_until(at).await;
        ctx.shards.spawn(
            i,
            watcher(
                ctx.client.clone(),
                i,
                ctx.first_user + i as u64,
                watch_id.clone(),
                a.members,
                ready_tx.clone(),
                seen_tx.clone(),
            ),
        );
    }
    drop((ready_tx, seen_tx));
    let (watching, failures) = cable::count_ready(&mut ready_rx, ctx.deadline).await;
    progress!(
        "presence-room: {watching}/{} watchers subscribed",
        a.watchers
    );

    let mut runs = Vec::new();
    for j in 0..a.joins {
        let user = a.members + 1 + j as u64;
        let cpu = CpuMark::now(ctx.server_pid);
        let server_before = ctx.server_pid.and_then(super::stats::proc_cpu_us);
        let mut ws = cable::open(&ctx.client, a.watchers + j, user)
            .await
            .map_err(|f| format!("newcomer {user}: {}", f.name()))?;
        let start = now_ns();
        ws.send_text(&cable::command("subscribe", &presence_id, None))
            .await
            .map_err(|e| format!("newcomer {user}: {e}"))?;
        let (mut confirmed, mut roster, mut roster_bytes, mut bytes) = (0, 0u64, 0u64, 0u64);
        let own = loop {
            let f = tokio::time::timeout_at(ctx.deadline, ws.next())
                .await
                .map_err(|_| format!("newcomer {user}: out of time"))?
                .map_err(|e| format!("newcomer {user}: {e}"))?;
            let Some(Frame::Text(t)) = f else {
                if f.is_none() {
                    return Err(format!("newcomer {user}: connection ended"));
                }
                continue;
            };
            bytes += t.len() as u64;
            match (cable::classify(t), parse_event(t)) {
                (Kind::Confirm, _) => confirmed = now_ns(),
                (Kind::Disconnect, _) => {
                    return Err(format!(
                        "newcomer {user} disconnected after {roster} roster frames"
                    ))
                }
                (_, Some((true, u))) if u == user => break now_ns(),
                (_, Some((true, _))) => {
                    roster += 1;
                    roster_bytes += t.len() as u64;
                }
                _ => {}
            }
        };
        let all_joined = all_saw(&mut seen_rx, watching, true, user, ctx.deadline).await;
        let server_join = server_before
            .zip(ctx.server_pid.and_then(super::stats::proc_cpu_us))
            .map(|(b, e)| round1(e.saturating_sub(b) as f64 / 1e3));
        // Leave: closing the socket runs the leave, broadcast to every watcher.
        let left_at = now_ns();
        drop(ws);
        let all_left = all_saw(&mut seen_rx, watching, false, user, ctx.deadline).await;
        runs.push(json!({
            "newcomer": user,
            "confirm_ms": ms(start, confirmed),
            "roster_frames": roster,
            "roster_bytes": roster_bytes,
            "roster_bytes_per_frame": roster_bytes / roster.max(1),
            "newcomer_bytes": bytes,
            "subscribe_to_own_user_joined_ms": ms(start, own),
            "subscribe_to_all_watchers_saw_join_ms": all_joined.map(|t| ms(start, t)),
            "close_to_all_watchers_saw_leave_ms": all_left.map(|t| ms(left_at, t)),
            "server_cpu_ms_join": server_join,
            "cpu_join_and_leave": cpu.since(ctx.server_pid, 0, "join"),
        }));
        progress!("presence-room: join {j}: {}", runs[j]);
    }
    Ok(json!({
        "members": a.members,
        "watchers": a.watchers,
        "watching": watching,
        "setup_failures": failures_json(&failures),
        "joins": runs,
        "truncated": Instant::now() >= ctx.deadline,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        let t = br#"{"identifier":"{\"channel\":\"PresenceChannel\",\"room_id\":\"1\"}","message":{"action":"user_joined","user":{"id":42,"name":null,"avatar_url":null},"member_ids":[1,42],"member_count":2}}"#;
        assert_eq!(parse_event(t), Some((true, 42)));
        let t = br#"{"identifier":"x","message":{"action":"user_left","user":{"id":7,"name":"A"},"member_ids":[],"member_count":0}}"#;
        assert_eq!(parse_event(t), Some((false, 7)));
        assert_eq!(
            parse_event(br#"{"identifier":"x","message":{"text":1}}"#),
            None
        );
    }
}
