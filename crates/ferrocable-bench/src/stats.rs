//! Measuring: a log-linear latency histogram, the process clock shared by publishers
//! and receivers, CPU time (ours from getrusage, the server's from /proc), and RSS.

use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{json, Value};

/// Nanoseconds since the generator's epoch (first call in this process). Publishers
/// and receivers live in one process, so timestamps compare directly.
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// Latencies in nanoseconds, bucketed with at most 1/64 relative error (32 linear
/// sub-buckets per power of two); count and max are exact.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    ((shift as u64 + 1) * SUB + ((v >> shift) - SUB)) as usize
}

/// The midpoint of bucket `i`.
fn value_of(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = i / SUB - 1;
    let low = (i % SUB + SUB) << shift;
    low + (1u64 << shift) / 2
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.max = self.max.max(v);
    }

    /// Adds `other`'s values.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1), in ns; the exact max for 1.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return self.max;
        }
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max);
            }
        }
        self.max
    }

    /// `{"count","p50_us","p90_us","p99_us","max_us","mean_us"}`.
    pub fn summary(&self) -> Value {
        let us = |ns: u64| round1(ns as f64 / 1000.0);
        let mean = if self.count == 0 {
            0.0
        } else {
            round1(self.sum as f64 / self.count as f64 / 1000.0)
        };
        json!({
            "count": self.count,
            "p50_us": us(self.quantile(0.50)),
            "p90_us": us(self.quantile(0.90)),
            "p99_us": us(self.quantile(0.99)),
            "max_us": us(self.max),
            "mean_us": mean,
        })
    }
}

/// Rounds to one decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Rounds to three decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// This process's user + system CPU time, in microseconds.
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage fills the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Process `pid`'s user + system CPU time in microseconds (from /proc/PID/stat).
pub fn proc_cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), which ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000 / hz)
}

/// Process `pid`'s resident set size in kB (VmRSS from /proc/PID/status).
pub fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raises the open-file soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur as u64;
            }
        }
        r.rlim_cur as u64
    }
}

/// CPU used by us and (if known) the server between two points of a run.
#[derive(Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    gen_us: u64,
    server_us: Option<u64>,
}

impl CpuMark {
    /// Samples now.
    pub fn now(server_pid: Option<u32>) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            gen_us: self_cpu_us(),
            server_us: server_pid.and_then(proc_cpu_us),
        }
    }

    /// `{"wall_s","gen_cpu_s","gen_cores","server_cpu_s","server_cores"}` since `self`,
    /// plus per-unit costs (`per` units of work, e.g. deliveries) when `per > 0`.
    pub fn since(&self, server_pid: Option<u32>, per: u64, unit: &str) -> Value {
        let end = CpuMark::now(server_pid);
        let wall = end.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let gen = end.gen_us.saturating_sub(self.gen_us);
        let mut v = json!({
            "wall_s": round3(wall),
            "gen_cpu_s": round3(gen as f64 / 1e6),
            "gen_cores": round3(gen as f64 / 1e6 / wall),
        });
        if per > 0 {
            v[format!("gen_cpu_us_per_{unit}")] = json!(round3(gen as f64 / per as f64));
        }
        if let (Some(a), Some(b)) = (self.server_us, end.server_us) {
            let s = b.saturating_sub(a);
            v["server_cpu_s"] = json!(round3(s as f64 / 1e6));
            v["server_cores"] = json!(round3(s as f64 / 1e6 / wall));
            if per > 0 {
                v[format!("server_cpu_us_per_{unit}")] = json!(round3(s as f64 / per as f64));
            }
            if gen + s > 0 {
                v["gen_cpu_share"] = json!(round3(gen as f64 / (gen + s) as f64));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_close() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000f64),
            (0.9, 90_000_000.0),
            (0.99, 99_000_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        for v in [0u64, 1, 63, 64, 65, 1 << 40, u64::MAX] {
            let b = bucket(v);
            assert!(b < BUCKETS);
            let mid = value_of(b) as f64;
            assert!(v < 64 || (mid - v as f64).abs() / (v as f64) < 1.0 / 32.0);
        }
    }

    #[test]
    fn proc_readings_work_on_ourselves() {
        let me = std::process::id();
        assert!(proc_rss_kb(me).expect("rss") > 0);
        assert!(proc_cpu_us(me).is_some());
    }
}
