//! Micro-benchmarks of the hot paths: command decode, frame encode, fan-out, and
//! filling / emptying one stream of the hub.
//!
//! `cargo bench --bench core`

use bytes::Bytes;
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput,
};
use ferrocable::hub::{Connection, Hub, Outgoing};
use ferrocable::protocol::{frames, ClientCommand, Identifier};

const SUBSCRIBE: &[u8] = br#"{"command":"subscribe","identifier":"{\"channel\":\"PresenceChannel\",\"room_id\":\"1\"}"}"#;
const PERFORM: &[u8] =
    br#"{"command":"message","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","data":"{\"text\":\"hello from alice\",\"action\":\"speak\"}"}"#;
const PAYLOAD: &[u8] = br#"{"action":"user_joined","user":{"id":1,"name":"Alice","avatar_url":"https://example.test/avatars/alice.png"},"member_ids":[1,2,3],"member_count":3}"#;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.bench_function("subscribe", |b| {
        b.iter(|| ClientCommand::decode(black_box(SUBSCRIBE)))
    });
    g.bench_function("perform", |b| {
        b.iter(|| ClientCommand::decode(black_box(PERFORM)))
    });
    g.bench_function("identifier_params", |b| {
        let id = Identifier::new(r#"{"channel":"PresenceChannel","room_id":"1"}"#);
        b.iter(|| black_box(&id).params())
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let id = Identifier::new(r#"{"channel":"PresenceChannel","room_id":"1"}"#);
    let mut g = c.benchmark_group("encode");
    g.bench_function("confirm", |b| b.iter(|| frames::confirm(black_box(&id))));
    g.bench_function("message", |b| {
        b.iter(|| frames::message(black_box(&id), black_box(PAYLOAD)))
    });
    g.bench_function("rails_json_reencode", |b| {
        b.iter(|| {
            let v: serde_json::Value =
                serde_json::from_slice(black_box(PAYLOAD)).unwrap_or_default();
            ferrocable::protocol::json::to_vec(&v)
        })
    });
    g.finish();
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("fan_out");
    for n in [1_000usize, 10_000] {
        let hub = Hub::new(64);
        let id = Identifier::new(r#"{"channel":"PresenceChannel","room_id":"1"}"#);
        let mut receivers = Vec::with_capacity(n);
        for i in 0..n {
            let conn = Connection::with_budget(i as u64, 1 << 20);
            hub.subscribe("presence_room_1", &id, &conn);
            receivers.push(conn);
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let fan = hub.broadcast("presence_room_1", black_box(PAYLOAD));
                // Empty the outboxes so every iteration measures delivery, not overflow.
                let mut out = std::collections::VecDeque::new();
                for conn in &receivers {
                    conn.take_now(&mut out);
                    for item in out.drain(..) {
                        if let Outgoing::Text(f) = item {
                            black_box(Bytes::len(&f));
                        }
                    }
                }
                fan
            })
        });
    }
    g.finish();
}

/// Subscribing `n` connections to one stream, and unsubscribing them in a scattered
/// order: each operation should cost the same whatever the stream's size.
fn stream_index(c: &mut Criterion) {
    let id = Identifier::new(r#"{"channel":"PresenceChannel","room_id":"1"}"#);
    let mut g = c.benchmark_group("stream_index");
    g.sample_size(10);
    for n in [1_000usize, 100_000] {
        let conns: Vec<_> = (0..n)
            .map(|i| Connection::with_budget(i as u64, 4096))
            .collect();
        let fill = |hub: &Hub| {
            for conn in &conns {
                hub.subscribe("presence_room_1", &id, conn);
            }
        };
        // A fixed permutation (multiplying by a number coprime to n), so removals
        // hit every part of the list, not always its end.
        let order: Vec<u64> = (0..n).map(|i| ((i * 7_919) % n) as u64).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("subscribe", n), &n, |b, _| {
            b.iter_batched(
                || Hub::new(64),
                |hub| {
                    fill(&hub);
                    hub
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_with_input(BenchmarkId::new("unsubscribe", n), &n, |b, _| {
            b.iter_batched(
                || {
                    let hub = Hub::new(64);
                    fill(&hub);
                    hub
                },
                |hub| {
                    for &conn in &order {
                        hub.unsubscribe("presence_room_1", &id, conn);
                    }
                    hub
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode, fan_out, stream_index);
criterion_main!(benches);
