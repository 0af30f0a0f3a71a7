//! Locking a mutex whatever happened to its last holder.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `mutex.locked()`: the guard, also when a thread panicked while holding it. drbook's
/// mutexes guard plain data (reports, caches, counters) that a panic cannot leave half
/// written, and a panic is already reported where it happens; refusing the lock afterwards
/// would only turn one failure into many.
pub trait Locked<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
