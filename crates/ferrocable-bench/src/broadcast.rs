//! `broadcast` and `fanout-ceiling`: N subscribers on one stream receive timestamped
//! broadcasts, published either by one more client performing `speak` on a declared
//! ChatChannel, or straight to Redis in Rails' format.
//!
//! Each broadcast carries `{"seq":N,"s":STEP,"t":NS}` (`t`: ns on the generator's
//! clock when it was sent). A receiver computes latency as `now - t`, keeps a bitset
//! of the seqs it saw (duplicates), and records into its shard's statistics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::auth::turbo_signed_name;
use super::cable::{self, int_after, Failure, Kind};
use super::redis;
use super::stats::{now_ns, round1, CpuMark, Histogram};
use super::ws::{find, Frame, Ws};
use super::{failures_json, progress, Ctx};

/// Who publishes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublisherKind {
    /// One extra client performing the channel's action (works in embedded mode).
    Chat,
    /// PUBLISH to Redis as a Rails app does (the server must relay from Redis).
    Redis,
    /// PUBLISH to Redis as AnyCable's broadcaster does: channel `__anycable__`,
    /// payload `{"stream":…,"data":"<json>"}` (for anycable-go).
    Anycable,
}

/// Flags shared by `broadcast` and `fanout-ceiling`.
#[derive(clap::Args, Clone)]
pub struct Source {
    /// Who publishes.
    #[arg(long, value_enum, default_value_t = PublisherKind::Chat)]
    publisher: PublisherKind,
    /// The declared stream channel subscribers join.
    #[arg(long, default_value = "ChatChannel")]
    channel: String,
    /// Its `room` param.
    #[arg(long, default_value = "bench")]
    room: String,
    /// The action the chat publisher performs; it must re-broadcast `text`.
    #[arg(long, default_value = "speak")]
    action: String,
    /// Subscribe to `Turbo::StreamsChannel` with a `signed_stream_name` for the stream
    /// (`--stream`, `{room}` interpolated) signed with this raw verifier key, instead of
    /// the declared `--channel` (works with ferrocable's `--turbo-verifier-key` and
    /// anycable-go's `--turbo_rails_key`). Needs a Redis publisher.
    #[arg(long, hide_env_values = true)]
    turbo_key: Option<String>,
    /// The broadcasting the channel streams from (`{room}` interpolated), for Redis.
    #[arg(long, default_value = "chat_{room}")]
    stream: String,
    /// Redis to publish to (loopback only).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Rails' `channel_prefix` from cable.yml (absent: none).
    #[arg(long)]
    channel_prefix: Option<String>,
    /// Subscribers connected per second during set-up.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
    /// After the last send, stop waiting for deliveries after this long without one.
    #[arg(long, default_value_t = 2000)]
    drain_ms: u64,
}

/// `broadcast` flags.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Broadcasts.
    #[arg(long, default_value_t = 100)]
    m: u64,
    /// Broadcasts per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    #[command(flatten)]
    src: Source,
}

/// `fanout-ceiling` flags.
#[derive(clap::Args, Clone)]
pub struct CeilingArgs {
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Broadcasts per second in the first step.
    #[arg(long, default_value_t = 20.0)]
    start_rate: f64,
    /// Rate multiplier between steps.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Seconds of sending per step.
    #[arg(long, default_value_t = 3.0)]
    step_seconds: f64,
    /// A step fails when its p99 delivery latency exceeds this.
    #[arg(long, default_value_t = 250.0)]
    max_p99_ms: f64,
    /// A step fails when it delivers less than this fraction of the offered rate.
    #[arg(long, default_value_t = 0.9)]
    min_delivered_ratio: f64,
    /// Stop after this many steps even if none failed.
    #[arg(long)]
    max_steps: Option<u64>,
    #[command(flatten)]
    src: Source,
}

/// One shard's counts, indexed by step and by seq.
#[derive(Default)]
struct ShardStats {
    latency: Vec<Histogram>,
    unique: Vec<u64>,
    dups: Vec<u64>,
    last_recv: Vec<u64>,
    seq_count: Vec<u32>,
    seq_max: Vec<u64>,
    unparsed: u64,
}

impl ShardStats {
    fn record(&mut self, step: usize, seq: usize, lat: u64, dup: bool, now: u64) {
        if self.unique.len() <= step {
            self.latency.resize(step + 1, Histogram::default());
            self.unique.resize(step + 1, 0);
            self.dups.resize(step + 1, 0);
            self.last_recv.resize(step + 1, 0);
        }
        self.last_recv[step] = self.last_recv[step].max(now);
        if dup {
            self.dups[step] += 1;
            return;
        }
        if self.seq_count.len() <= seq {
            let len = (seq + 1).max(self.seq_count.len() * 2);
            self.seq_count.resize(len, 0);
            self.seq_max.resize(len, 0);
        }
        self.unique[step] += 1;
        self.latency[step].record(lat);
        self.seq_count[seq] += 1;
        self.seq_max[seq] = self.seq_max[seq].max(lat);
    }
}

/// `(seq, step, sent_ns)` from a message frame carrying `"seq":N,"s":S,"t":T` in
/// any key order (anycable-go re-encodes payloads with sorted keys).
fn parse_stamp(t: &[u8]) -> Option<(u64, u64, u64)> {
    let body = &t[find(t, b"\"message\":")?..];
    let (seq, _) = int_after(body, b"\"seq\":")?;
    let (step, _) = int_after(body, b"\"s\":")?;
    let (sent, _) = int_after(body, b"\"t\":")?;
    Some((seq, step, sent))
}

/// The stamp a broadcast carries.
fn stamp(seq: u64, step: u64, sent: u64) -> String {
    format!(r#"{{"seq":{seq},"s":{step},"t":{sent}}}"#)
}

struct Plan {
    step: u64,
    first_seq: u64,
    count: u64,
    rate: f64,
    done: oneshot::Sender<Result<(u64, u64), String>>,
}

enum Publisher {
    Chat {
        ws: Ws,
        identifier: String,
        action: String,
    },
    Redis {
        conn: redis::Publisher,
        channel: Vec<u8>,
        /// Wrap payloads as AnyCable's broadcaster does, for this stream.
        anycable_stream: Option<String>,
        receivers: Arc<AtomicUsize>,
    },
}

impl Publisher {
    /// Waits until `at`, reading (and discarding) what the chat publisher receives.
    async fn idle_until(&mut self, at: Instant) -> Result<(), String> {
        match self {
            Publisher::Redis { .. } => {
                tokio::time::sleep_until(at).await;
                Ok(())
            }
            Publisher::Chat { ws, .. } => loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => return Ok(()),
                    f = ws.next() => match f {
                        Ok(Some(Frame::Text(_) | Frame::Pong(_))) => {}
                        _ => return Err("the publisher's connection closed".into()),
                    }
                }
            },
        }
    }

    async fn publish(&mut self, seq: u64, step: u64) -> Result<u64, String> {
        match self {
            Publisher::Chat {
                ws,
                identifier,
                action,
            } => {
                let sent = now_ns();
                let data = format!(
                    r#"{{"text":{},"action":"{action}"}}"#,
                    stamp(seq, step, sent)
                );
                ws.send_text(&cable::command("message", identifier, Some(&data)))
                    .await
                    .map_err(|e| format!("publisher: {e}"))?;
                Ok(sent)
            }
            Publisher::Redis {
                conn,
                channel,
                anycable_stream,
                receivers,
            } => {
                let sent = now_ns();
                let mut payload = stamp(seq, step, sent);
                if let Some(stream) = anycable_stream {
                    payload = json!({"stream": stream, "data": payload}).to_string();
                }
                let n = conn
                    .publish(channel, payload.as_bytes())
                    .await
                    .map_err(|e| format!("redis publish: {e}"))?;
                receivers.store(n as usize, Ordering::Relaxed);
                Ok(sent)
            }
        }
    }

    async fn execute(&mut self, plan: &Plan) -> Result<(u64, u64), String> {
        let start = Instant::now();
        let mut first = None;
        let mut last = 0;
        for k in 0..plan.count {
            let at = start + Duration::from_secs_f64(k as f64 / plan.rate);
            if Instant::now() < at {
                self.idle_until(at).await?;
            }
            last = self.publish(plan.first_seq + k, plan.step).await?;
            first.get_or_insert(last);
        }
        Ok((first.unwrap_or(last), last))
    }
}

async fn publisher_task(mut p: Publisher, mut plans: mpsc::Receiver<Plan>) {
    let mut broken: Option<String> = None;
    loop {
        let plan = match (&mut p, &broken) {
            (Publisher::Chat { ws, .. }, None) => tokio::select! {
                pl = plans.recv() => pl,
                f = ws.next() => {
                    if !matches!(f, Ok(Some(_))) {
                        broken = Some("the publisher's connection closed".into());
                    }
                    continue;
                }
            },
            _ => plans.recv().await,
        };
        let Some(plan) = plan else { return };
        let r = match &broken {
            Some(e) => Err(e.clone()),
            None => p.execute(&plan).await,
        };
        if let Err(e) = &r {
            broken = Some(e.clone());
        }
        let _ = plan.done.send(r);
    }
}

/// Subscribers, their statistics and the publisher, set up and ready.
struct Bench {
    stats: Arc<Vec<Mutex<ShardStats>>>,
    alive: Arc<AtomicUsize>,
    ready: usize,
    failures: BTreeMap<Failure, u64>,
    stop: CancellationToken,
    subs: Vec<tokio::task::JoinHandle<()>>,
    plans: mpsc::Sender<Plan>,
    receivers: Arc<AtomicUsize>,
    redis: bool,
    next_seq: u64,
    drain: Duration,
    setup_s: f64,
}

/// What a step measured.
struct StepOutcome {
    json: Value,
    lost: u64,
    dups: u64,
    disconnected: usize,
    p99_ns: u64,
    delivered_per_s: f64,
    offered_per_s: f64,
}

// A task's inputs, passed once; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn subscriber(
    cfg: cable::ClientConfig,
    i: usize,
    user: u64,
    identifier: String,
    stats: Arc<Vec<Mutex<ShardStats>>>,
    shard: usize,
    ready: mpsc::UnboundedSender<Result<(), Failure>>,
    alive: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let mut ws = match cable::open_subscribed(&cfg, i, user, &identifier).await {
        Ok(ws) => ws,
        Err(f) => {
            let _ = ready.send(Err(f));
            return;
        }
    };
    alive.fetch_add(1, Ordering::SeqCst);
    let _ = ready.send(Ok(()));
    drop(ready);
    let stats = &stats[shard];
    let mut seen: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            f = ws.next() => match f {
                Ok(Some(Frame::Text(t))) => match cable::classify(t) {
                    Kind::Message => {
                        let now = now_ns();
                        let Some((seq, step, sent)) = parse_stamp(t) else {
                            stats.lock().unparsed += 1;
                            continue;
                        };
                        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
                        if seen.len() <= word {
                            seen.resize((word + 1).max(seen.len() * 2), 0);
                        }
                        let dup = seen[word] & bit != 0;
                        seen[word] |= bit;
                        stats.lock().record(step as usize, seq as usize, now.saturating_sub(sent), dup, now);
                    }
                    Kind::Disconnect => break,
                    _ => {}
                },
                Ok(Some(Frame::Pong(_))) => {}
                _ => break,
            }
        }
    }
    alive.fetch_sub(1, Ordering::SeqCst);
}

impl Bench {
    async fn setup(ctx: &Ctx, n: usize, src: &Source) -> Result<Bench, String> {
        let broadcasting = src.stream.replace("{room}", &src.room);
        let identifier = match &src.turbo_key {
            Some(key) => {
                if src.publisher == PublisherKind::Chat {
                    return Err("--turbo-key needs --publisher redis or anycable".into());
                }
                serde_json::to_string(&json!({
                    "channel": "Turbo::StreamsChannel",
                    "signed_stream_name": turbo_signed_name(key.as_bytes(), &broadcasting),
                }))
            }
            None => serde_json::to_string(&json!({"channel": src.channel, "room": src.room})),
        }
        .map_err(|e| e.to_string())?;
        let stats: Arc<Vec<Mutex<ShardStats>>> = Arc::new(
            (0..ctx.shards.len())
                .map(|_| Mutex::new(ShardStats::default()))
                .collect(),
        );
        let alive = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let mut subs = Vec::with_capacity(n);
        let mut failures = BTreeMap::new();
        let mut ready = 0;
        let mut next_report = t0 + Duration::from_secs(1);
        for i in 0..n {
            let at = t0 + Duration::from_secs_f64(i as f64 / src.connect_rate.max(0.001));
            if at >= ctx.deadline {
                return Err("ran out of time connecting subscribers".into());
            }
            tokio::time::sleep_until(at).await;
            if Instant::now() >= next_report {
                progress!("subscribers: started {i}/{n}");
                next_report += Duration::from_secs(1);
            }
            subs.push(ctx.shards.spawn(
                i,
                subscriber(
                    ctx.client.clone(),
                    i,
                    ctx.first_user + i as u64,
                    identifier.clone(),
                    stats.clone(),
                    i % ctx.shards.len(),
                    tx.clone(),
                    alive.clone(),
                    stop.clone(),
                ),
            ));
        }
        drop(tx);
        for _ in 0..n {
            match tokio::time::timeout_at(ctx.deadline, rx.recv()).await {
                Ok(Some(Ok(()))) => ready += 1,
                Ok(Some(Err(f))) => *failures.entry(f).or_default() += 1,
                Ok(None) => break,
                Err(_) => return Err("ran out of time subscribing".into()),
            }
        }
        let receivers = Arc::new(AtomicUsize::new(0));
        let publisher = match src.publisher {
            PublisherKind::Chat => {
                let user = ctx.first_user + n as u64;
                let mut ws = cable::open(&ctx.client, n, user)
                    .await
                    .map_err(|f| format!("publisher connection: {}", f.name()))?;
                cable::subscribe(&mut ws, &identifier, ctx.client.step_timeout)
                    .await
                    .map_err(|f| format!("publisher subscription: {}", f.name()))?;
                Publisher::Chat {
                    ws,
                    identifier,
                    action: src.action.clone(),
                }
            }
            PublisherKind::Redis => Publisher::Redis {
                conn: redis::Publisher::connect(&src.redis_url).await?,
                channel: redis::channel(src.channel_prefix.as_deref(), &broadcasting).into_bytes(),
                anycable_stream: None,
                receivers: receivers.clone(),
            },
            PublisherKind::Anycable => Publisher::Redis {
                conn: redis::Publisher::connect(&src.redis_url).await?,
                channel: b"__anycable__".to_vec(),
                anycable_stream: Some(broadcasting),
                receivers: receivers.clone(),
            },
        };
        let (plans, plan_rx) = mpsc::channel(1);
        // The publisher gets its own shard slot after the subscribers'.
        ctx.shards.spawn(n, publisher_task(publisher, plan_rx));
        let setup_s = t0.elapsed().as_secs_f64();
        progress!(
            "{ready} subscribers ready in {setup_s:.1} s, {} failed",
            n - ready
        );
        Ok(Bench {
            stats,
            alive,
            ready,
            failures,
            stop,
            subs,
            plans,
            receivers,
            redis: src.publisher != PublisherKind::Chat,
            next_seq: 0,
            drain: Duration::from_millis(src.drain_ms),
            setup_s,
        })
    }

    fn unique(&self, step: usize) -> u64 {
        self.stats
            .iter()
            .map(|s| s.lock().unique.get(step).copied().unwrap_or(0))
            .sum()
    }

    async fn step(
        &mut self,
        ctx: &Ctx,
        step: u64,
        count: u64,
        rate: f64,
    ) -> Result<StepOutcome, String> {
        let subscribers = self.alive.load(Ordering::SeqCst);
        let first_seq = self.next_seq;
        self.next_seq += count;
        let cpu = CpuMark::now(ctx.server_pid);
        let (done, result) = oneshot::channel();
        self.plans
            .send(Plan {
                step,
                first_seq,
                count,
                rate,
                done,
            })
            .await
            .map_err(|_| "publisher task ended".to_string())?;
        let (first_sent, last_sent) = match tokio::time::timeout_at(ctx.deadline, result).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err("publisher task ended".into()),
            Err(_) => return Err("ran out of time publishing".into()),
        };
        // Drain: until everything expected arrived, or nothing arrives for a while.
        let expected = count * subscribers as u64;
        let s = step as usize;
        let mut got = self.unique(s);
        let mut last_change = Instant::now();
        while got < expected && last_change.elapsed() < self.drain && Instant::now() < ctx.deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.unique(s);
            if now != got {
                got = now;
                last_change = Instant::now();
            }
        }
        let cpu_json = cpu.since(ctx.server_pid, got, "delivery");

        let mut latency = Histogram::default();
        let mut dups = 0;
        let mut last_recv = 0;
        let mut unparsed = 0;
        let mut counts = vec![0u64; count as usize];
        let mut tta_ns = vec![0u64; count as usize];
        for sh in self.stats.iter() {
            let sh = sh.lock();
            if let Some(h) = sh.latency.get(s) {
                latency.merge(h);
                dups += sh.dups[s];
                last_recv = last_recv.max(sh.last_recv[s]);
            }
            unparsed += sh.unparsed;
            for k in 0..count as usize {
                let seq = first_seq as usize + k;
                if let Some(&c) = sh.seq_count.get(seq) {
                    counts[k] += u64::from(c);
                    tta_ns[k] = tta_ns[k].max(sh.seq_max[seq]);
                }
            }
        }
        let mut tta = Histogram::default();
        let mut incomplete = 0;
        for (c, t) in counts.iter().zip(&tta_ns) {
            if *c >= subscribers as u64 {
                tta.record(*t);
            } else {
                incomplete += 1;
            }
        }
        let span_s = (last_recv.saturating_sub(first_sent)) as f64 / 1e9;
        let delivered_per_s = if span_s > 0.0 {
            got as f64 / span_s
        } else {
            0.0
        };
        let offered_per_s = rate * subscribers as f64;
        let lost = expected.saturating_sub(got);
        let disconnected = subscribers.saturating_sub(self.alive.load(Ordering::SeqCst));
        let mut json = json!({
            "step": step,
            "broadcasts": count,
            "rate_per_s": round1(rate),
            "subscribers": subscribers,
            "offered_deliveries_per_s": round1(offered_per_s),
            "send_s": super::stats::round3((last_sent - first_sent) as f64 / 1e9),
            "expected": expected,
            "delivered": got,
            "lost": lost,
            "duplicates": dups,
            "disconnected": disconnected,
            "deliveries_per_s": round1(delivered_per_s),
            "latency": latency.summary(),
            "time_to_all": tta.summary(),
            "incomplete_broadcasts": incomplete,
            "cpu": cpu_json,
        });
        if unparsed > 0 {
            json["unparsed_messages"] = json!(unparsed);
        }
        if self.redis {
            // 0 means no server is SUBSCRIBEd to the channel: check the prefix.
            json["redis_receivers"] = json!(self.receivers.load(Ordering::Relaxed));
        }
        Ok(StepOutcome {
            json,
            lost,
            dups,
            disconnected,
            p99_ns: latency.quantile(0.99),
            delivered_per_s,
            offered_per_s,
        })
    }

    async fn finish(self) {
        self.stop.cancel();
        drop(self.plans);
        for s in self.subs {
            let _ = s.await;
        }
    }
}

/// Runs `broadcast`.
///
/// # Errors
/// When set-up or publishing fails outright.
pub async fn run(ctx: &Ctx, a: &Args) -> Result<Value, String> {
    let mut b = Bench::setup(ctx, a.n, &a.src).await?;
    progress!("broadcast: {} messages at {}/s", a.m, a.rate);
    let out = b.step(ctx, 0, a.m, a.rate).await?;
    let mut v = json!({
        "n": a.n,
        "m": a.m,
        "publisher": format!("{:?}", a.src.publisher).to_lowercase(),
        "subscribers_ready": b.ready,
        "subscribe_failures": failures_json(&b.failures),
        "setup_s": round1(b.setup_s),
        "truncated": Instant::now() >= ctx.deadline,
    });
    if let (Value::Object(o), Value::Object(s)) = (&mut v, out.json) {
        o.extend(s);
    }
    b.finish().await;
    Ok(v)
}

/// Runs `fanout-ceiling`.
///
/// # Errors
/// When set-up fails outright.
pub async fn ceiling(ctx: &Ctx, a: &CeilingArgs) -> Result<Value, String> {
    let mut b = Bench::setup(ctx, a.n, &a.src).await?;
    let mut steps = Vec::new();
    let mut rate = a.start_rate;
    let mut best: Option<(f64, f64)> = None;
    let mut stopped_by = "time";
    let drain_s = b.drain.as_secs_f64();
    for step in 0.. {
        if a.max_steps.is_some_and(|m| step >= m) {
            stopped_by = "max_steps";
            break;
        }
        if ctx.left().as_secs_f64() < a.step_seconds + drain_s + 1.0 {
            break;
        }
        let count = (rate * a.step_seconds).ceil().max(1.0) as u64;
        progress!("fanout-ceiling: step {step}, {rate:.0} broadcasts/s");
        let o = match b.step(ctx, step, count, rate).await {
            Ok(o) => o,
            Err(e) => {
                // At high rates the publisher (also a subscriber) is usually the first
                // client the server drops as slow.
                stopped_by = "error";
                steps.push(json!({"step": step, "rate_per_s": round1(rate), "error": e}));
                break;
            }
        };
        steps.push(o.json);
        let failed = if o.lost > 0 || o.disconnected > 0 {
            Some("loss")
        } else if o.dups > 0 {
            Some("duplicates")
        } else if o.p99_ns as f64 > a.max_p99_ms * 1e6 {
            Some("latency")
        } else if o.delivered_per_s < a.min_delivered_ratio * o.offered_per_s {
            Some("throughput")
        } else {
            None
        };
        if let Some(why) = failed {
            stopped_by = why;
            break;
        }
        if best.is_none_or(|(d, _)| o.delivered_per_s > d) {
            best = Some((o.delivered_per_s, rate));
        }
        rate *= a.factor;
    }
    let v = json!({
        "n": a.n,
        "publisher": format!("{:?}", a.src.publisher).to_lowercase(),
        "subscribers_ready": b.ready,
        "subscribe_failures": failures_json(&b.failures),
        "ceiling_deliveries_per_s": best.map(|(d, _)| round1(d)),
        "ceiling_rate_per_s": best.map(|(_, r)| round1(r)),
        "stopped_by": stopped_by,
        "max_p99_ms": a.max_p99_ms,
        "steps": steps,
        "truncated": stopped_by == "time",
    });
    b.finish().await;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_a_chat_frame() {
        let s = stamp(7, 2, 123_456);
        let frame = format!(
            r#"{{"identifier":"{{\"channel\":\"ChatChannel\",\"room\":\"bench\"}}","message":{{"text":{s},"user_id":9}}}}"#
        );
        assert_eq!(parse_stamp(frame.as_bytes()), Some((7, 2, 123_456)));
        assert_eq!(parse_stamp(br#"{"message":{"seq":1}}"#), None);
        assert_eq!(
            parse_stamp(br#"{"identifier":"{\"s\":9}","message":{"s":2,"seq":7,"t":5}}"#),
            Some((7, 2, 5))
        );
    }
}
