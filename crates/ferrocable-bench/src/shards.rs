//! One current-thread tokio runtime per worker thread. A client's task stays on one
//! thread for life: no work stealing, no cross-thread wakeups on the receive path,
//! and per-shard statistics behind uncontended locks.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The worker runtimes.
pub struct Shards {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts `n` (at least one) worker threads.
    ///
    /// # Panics
    /// When a runtime cannot be built (out of resources at start-up).
    pub fn start(n: usize) -> Shards {
        let mut s = Shards {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n.max(1) {
            let (htx, hrx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let t = std::thread::Builder::new()
                .name(format!("bench-{i}"))
                .spawn(move || {
                    let rt = Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a tokio runtime at start-up");
                    htx.send(rt.handle().clone()).expect("start() is waiting");
                    let _ = rt.block_on(stop_rx);
                })
                .expect("a worker thread at start-up");
            s.handles
                .push(hrx.recv().expect("the worker sends its handle"));
            s.stops.push(stop_tx);
            s.threads.push(t);
        }
        s
    }

    /// How many shards.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Runs `fut` on shard `i % len`.
    pub fn spawn<F>(&self, i: usize, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[i % self.handles.len()].spawn(fut)
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
