//! Ctrl-C and SIGTERM as a run sees them: counted, so the first cancels what is waiting and
//! a second aborts the run.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::sync::Notify;

/// Ctrl-C (SIGINT) and SIGTERM: the first interrupts the current wait or read (a catchable
/// error in the script) — a mutation under way finishes and is journaled first — any later
/// one aborts the run.
#[derive(Default)]
pub struct Interrupts {
    count: AtomicU32,
    /// Whether a SIGTERM came (the exit code says which signal stopped the run).
    terminated: AtomicBool,
    notify: Notify,
}

impl Interrupts {
    pub fn signal(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// A SIGTERM: as a Ctrl-C, remembered for the exit code.
    pub fn terminate(&self) {
        self.terminated.store(true, Ordering::SeqCst);
        self.signal();
    }

    /// Whether a SIGTERM came.
    pub fn terminated(&self) -> bool {
        self.terminated.load(Ordering::SeqCst)
    }

    /// How many Ctrl-Cs so far.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }

    pub fn aborted(&self) -> bool {
        self.count() >= 2
    }

    /// Forgets the Ctrl-Cs so far: the REPL's next command starts afresh.
    pub fn reset(&self) {
        self.count.store(0, Ordering::SeqCst);
    }

    /// Resolves once a Ctrl-C arrives after `seen` of them.
    pub(super) async fn after(&self, seen: u32) {
        loop {
            let notified = self.notify.notified();
            if self.count() > seen {
                return;
            }
            notified.await;
        }
    }
}
