//! The data ledger: which writes each copy of an image holds, and how much data mirroring moved.
//!
//! Every write gets a sequence number from one counter for the whole simulator, so a test can
//! say exactly which writes a copy holds after any failover: a forced promote keeps only the
//! writes of the last snapshot the replica received completely (the RPO, Glue spec §5.4), and a
//! correct failback keeps every write made on the DR site.

use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::sync::Arc;

use serde::Serialize;

/// The writes one copy of an image (or one mirror snapshot) holds: ascending sequence numbers.
///
/// Shared copy-on-write, because every mirror snapshot captures the whole content of its
/// image: taking a snapshot costs a reference, and the next write copies once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writes(Arc<Vec<u64>>);

impl Writes {
    /// Adds new writes. Sequence numbers come from one [`WriteCounter`], so they are larger than
    /// any this copy holds already.
    pub fn append(&mut self, seqs: &[u64]) {
        debug_assert!(
            seqs.windows(2).all(|w| w[0] < w[1])
                && seqs.first().is_none_or(|first| self.head() < Some(*first)),
            "write sequence numbers only grow"
        );
        Arc::make_mut(&mut self.0).extend_from_slice(seqs);
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The newest write held.
    pub fn head(&self) -> Option<u64> {
        self.0.last().copied()
    }

    /// How many of `other`'s writes this copy lacks: what a delta from `other` must carry.
    pub fn missing_from(&self, other: &Writes) -> u64 {
        let mine = self.as_slice();
        let mut missing = 0;
        let mut i = 0;
        for seq in other.as_slice() {
            while i < mine.len() && mine[i] < *seq {
                i += 1;
            }
            if mine.get(i) != Some(seq) {
                missing += 1;
            }
        }
        missing
    }
}

/// Hands out write sequence numbers: 1, 2, 3, … across all images and sites.
#[derive(Debug, Default)]
pub struct WriteCounter {
    last: u64,
}

impl WriteCounter {
    /// The next `count` sequence numbers.
    pub fn issue(&mut self, count: u64) -> Vec<u64> {
        let first = self.last + 1;
        self.last += count;
        (first..=self.last).collect()
    }

    /// The newest sequence number handed out (0 before the first write).
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// What mirroring copied between the sites: full copies (bootstrap and resync) and snapshot
/// deltas, counted when a copy completes. A failback that needs no full copy is the cheap one
/// (Glue spec §5.3); this is how a test tells them apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DataMovement {
    pub full_copies: u64,
    pub delta_transfers: u64,
    pub bytes_full: u64,
    pub bytes_delta: u64,
}

impl DataMovement {
    /// One completed full copy of `bytes`.
    pub fn full(bytes: u64) -> Self {
        Self {
            full_copies: 1,
            bytes_full: bytes,
            ..Self::default()
        }
    }

    /// One completed snapshot delta of `bytes`.
    pub fn delta(bytes: u64) -> Self {
        Self {
            delta_transfers: 1,
            bytes_delta: bytes,
            ..Self::default()
        }
    }
}

impl Add for DataMovement {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            full_copies: self.full_copies + other.full_copies,
            delta_transfers: self.delta_transfers + other.delta_transfers,
            bytes_full: self.bytes_full + other.bytes_full,
            bytes_delta: self.bytes_delta + other.bytes_delta,
        }
    }
}

impl AddAssign for DataMovement {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl Sum for DataMovement {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(seqs: &[u64]) -> Writes {
        let mut w = Writes::default();
        w.append(seqs);
        w
    }

    #[test]
    fn the_counter_numbers_writes_across_calls() {
        let mut counter = WriteCounter::default();
        assert_eq!(counter.last(), 0);
        assert_eq!(counter.issue(3), vec![1, 2, 3]);
        assert_eq!(counter.issue(0), Vec::<u64>::new());
        assert_eq!(counter.issue(2), vec![4, 5]);
        assert_eq!(counter.last(), 5);
    }

    #[test]
    fn a_delta_carries_what_the_receiver_lacks() {
        let replica = writes(&[1, 2, 3]);
        let primary = writes(&[1, 2, 3, 4, 5]);
        assert_eq!(replica.missing_from(&primary), 2);
        assert_eq!(primary.missing_from(&replica), 0);
        // Divergent copies: each lacks the other's own writes.
        let diverged = writes(&[1, 2, 6, 7, 8]);
        assert_eq!(primary.missing_from(&diverged), 3);
        assert_eq!(diverged.missing_from(&primary), 3);
        assert_eq!(Writes::default().missing_from(&primary), 5);
    }

    #[test]
    fn a_snapshot_keeps_its_content_when_the_image_moves_on() {
        let mut image = writes(&[1, 2]);
        let snapshot = image.clone();
        image.append(&[3]);
        assert_eq!(snapshot.as_slice(), &[1, 2]);
        assert_eq!(image.as_slice(), &[1, 2, 3]);
        assert_eq!(image.head(), Some(3));
        assert_eq!(image.len(), 3);
        assert!(Writes::default().is_empty());
    }

    #[test]
    fn data_movement_adds_up() {
        let total: DataMovement = [
            DataMovement::full(64),
            DataMovement::delta(8),
            DataMovement::delta(0),
        ]
        .into_iter()
        .sum();
        assert_eq!(
            total,
            DataMovement {
                full_copies: 1,
                delta_transfers: 2,
                bytes_full: 64,
                bytes_delta: 8
            }
        );
        let mut acc = DataMovement::default();
        acc += total;
        acc += DataMovement::full(1);
        assert_eq!((acc.full_copies, acc.bytes_full), (2, 65));
    }
}
