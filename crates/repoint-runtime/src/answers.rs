//! Answers a selective policy has given, by the parts of the resource it
//! was shown (see the `selective-policy` world).
//!
//! A policy is a function of its settings and what it is shown: its sandbox
//! has no clock, a fixed random source and no other input, and an answer
//! that called the host (a log line, a registry probe) is never kept. So
//! the answer kept for a shown resource is the one a fresh instance would
//! give it again, and reusing it changes nothing but the time taken. The
//! sets are bounded: a stream (or a hostile client) with endless distinct
//! resources fills a set, which is then emptied and starts again, so the
//! worst case is the cost of not reusing at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use repoint_core::actions::Action;

/// Most answers one policy keeps.
const MAX_ANSWERS: usize = 4096;
/// Most bytes of shown resources (keys) one policy keeps.
const MAX_KEY_BYTES: usize = 8 << 20;

/// One configured policy's answers, shared by every chain that holds it
/// and every thread that evaluates with it.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    kept: Mutex<Kept>,
    reused: AtomicU64,
}

#[derive(Debug, Default)]
struct Kept {
    by_shown: HashMap<Box<[u8]>, Arc<[Action]>>,
    key_bytes: usize,
}

impl Answers {
    /// The answer given to the resource shown as `key`, if kept.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Arc<[Action]>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let found = kept.by_shown.get(key).cloned();
        if found.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keep `actions` as the answer to the resource shown as `key`.
    pub(crate) fn keep(&self, key: Box<[u8]>, actions: Arc<[Action]>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.by_shown.len() >= MAX_ANSWERS || kept.key_bytes + key.len() > MAX_KEY_BYTES {
            kept.by_shown.clear();
            kept.key_bytes = 0;
        }
        let len = key.len();
        // Already there when two threads evaluated the same resource at once.
        if kept.by_shown.insert(key, actions).is_none() {
            kept.key_bytes += len;
        }
    }

    /// How many evaluations were answered from the kept answers.
    pub(crate) fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_set_starts_again_and_keeps_answering() {
        let answers = Answers::default();
        let answer: Arc<[Action]> = vec![Action::Warn("w".into())].into();
        for i in 0..MAX_ANSWERS + 10 {
            answers.keep(i.to_le_bytes().into(), answer.clone());
        }
        let kept = answers.kept.lock().expect("lock").by_shown.len();
        assert_eq!(kept, 10, "emptied once at the bound");
        assert!(answers.get(&(MAX_ANSWERS + 9).to_le_bytes()).is_some());
        assert!(answers.get(&0usize.to_le_bytes()).is_none());
        assert_eq!(answers.reused(), 1);
    }

    #[test]
    fn keys_are_bounded_by_bytes_too() {
        let answers = Answers::default();
        let answer: Arc<[Action]> = Vec::new().into();
        let big = MAX_KEY_BYTES / 2 + 1;
        answers.keep(vec![1u8; big].into(), answer.clone());
        answers.keep(vec![2u8; big].into(), answer);
        let kept = answers.kept.lock().expect("lock");
        assert_eq!(kept.by_shown.len(), 1);
        assert_eq!(kept.key_bytes, big);
    }
}
