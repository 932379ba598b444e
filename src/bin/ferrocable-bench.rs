//! `ferrocable-bench`: a load generator speaking the Action Cable protocol, for
//! measuring ferrocable (or any Action Cable server) on the local machine.
//!
//! Modes: `connect` (N idle clients: connect latency and server RSS per connection),
//! `broadcast` (N subscribers, M timestamped broadcasts: latency, time to all, loss),
//! `fanout-ceiling` (rising broadcast rate until loss or latency blows up),
//! `presence-churn` (clients joining and leaving PresenceChannel rooms). Every mode is
//! bounded in time, talks to loopback addresses only, and prints one JSON line of
//! results on stdout; progress goes to stderr. See BENCHMARKS.md.

#[path = "ferrocable_bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
