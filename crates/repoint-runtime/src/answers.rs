//! Answers a selective policy has given, by the parts of the resource it
//! was shown (see the `selective-policy` world), and outcomes a chain of
//! them has come to, by everything the chain could read of the object.
//!
//! A policy is a function of its settings and what it is shown: its sandbox
//! has no clock, a fixed random source and no other input. Only answers of
//! an instance's first evaluation are kept (not those of the convergence
//! pass, which runs in the same instance), and none that called the host
//! (a log line, a registry probe). So the answer kept for a shown resource
//! is the one a fresh instance gives it, and reusing it changes nothing
//! but the time taken.
//!
//! A shown resource is kept as its SHA-256 digest ([`crate::convert::Shown::key`]),
//! as OCI content is addressed: 32 bytes however large the object's JSON,
//! and no two different resources share one short of a SHA-256 collision.
//! The sets are bounded, in answers and in the bytes they hold: a stream
//! (or a hostile client) with endless distinct resources fills a set, which
//! is then emptied and starts again, so the worst case is the cost of not
//! reusing at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use repoint_core::actions::{Action, EnsurePullSecret, PatchServiceAccount};
use repoint_core::patch::PatchOp;
use serde_json::Value;

/// Most answers one policy keeps.
const MAX_ANSWERS: usize = 4096;
/// Most bytes of answers (their texts, roughly) one policy keeps.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The digest a shown resource is kept under.
pub(crate) type Key = [u8; 32];

/// About how many bytes a kept answer holds: its texts, and a word or so
/// for each part.
pub(crate) trait Footprint {
    fn footprint(&self) -> usize;
}

/// One configured policy's answers (or one chain's outcomes), shared by
/// every chain that holds it and every thread that evaluates with it.
#[derive(Debug)]
pub(crate) struct Answers<V = Arc<[Action]>> {
    kept: Mutex<Kept<V>>,
    reused: AtomicU64,
}

impl<V> Default for Answers<V> {
    fn default() -> Self {
        Self {
            kept: Mutex::new(Kept {
                by_shown: HashMap::new(),
                bytes: 0,
            }),
            reused: AtomicU64::new(0),
        }
    }
}

#[derive(Debug)]
struct Kept<V> {
    by_shown: HashMap<Key, V>,
    bytes: usize,
}

impl<V: Clone + Footprint> Answers<V> {
    /// The answer given to the resource shown as `key`, if kept.
    pub(crate) fn get(&self, key: &Key) -> Option<V> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let found = kept.by_shown.get(key).cloned();
        if found.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keep `answer` as the answer to the resource shown as `key`; an
    /// answer larger than a set holds is not kept.
    pub(crate) fn keep(&self, key: Key, answer: V) {
        let bytes = size_of::<Key>() + answer.footprint();
        if bytes > MAX_ANSWER_BYTES {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.by_shown.len() >= MAX_ANSWERS || kept.bytes + bytes > MAX_ANSWER_BYTES {
            kept.by_shown.clear();
            kept.bytes = 0;
        }
        // Already there when two threads evaluated the same resource at once.
        if kept.by_shown.insert(key, answer).is_none() {
            kept.bytes += bytes;
        }
    }

    /// Count `n` more evaluations answered without running: the chain
    /// they are part of was answered whole.
    pub(crate) fn count_reuse(&self, n: u32) {
        self.reused.fetch_add(u64::from(n), Ordering::Relaxed);
    }
}

impl<V> Answers<V> {
    /// How many evaluations were answered from the kept answers.
    pub(crate) fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
}

/// A word or so for each part of an answer.
pub(crate) const PART: usize = 32;

/// The footprint of a text.
pub(crate) fn text_size(s: &str) -> usize {
    PART + s.len()
}

/// The footprint of an optional text.
pub(crate) fn maybe_size(s: &Option<String>) -> usize {
    s.as_deref().map_or(PART, text_size)
}

impl Footprint for Arc<[Action]> {
    fn footprint(&self) -> usize {
        actions_size(self)
    }
}

fn actions_size(actions: &[Action]) -> usize {
    let (text, maybe) = (text_size, maybe_size);
    actions
        .iter()
        .map(|action| match action {
            Action::SetImage { pointer, image } => {
                text(pointer)
                    + text(&image.registry)
                    + text(&image.repository)
                    + maybe(&image.tag)
                    + maybe(&image.digest)
            }
            Action::AddPullSecret(s) | Action::Deny(s) | Action::Warn(s) => text(s),
            Action::EnsurePullSecret(e) => ensure_size(e),
            Action::PatchServiceAccount(p) => account_size(p),
            Action::JsonPatch(ops) => patch_size(ops),
        })
        .sum::<usize>()
        + PART
}

/// The footprint of a request that a pull Secret exist.
pub(crate) fn ensure_size(e: &EnsurePullSecret) -> usize {
    text_size(&e.name)
        + maybe_size(&e.namespace)
        + e.registries.iter().map(|r| text_size(r)).sum::<usize>()
}

/// The footprint of a request that a ServiceAccount list a pull secret.
pub(crate) fn account_size(p: &PatchServiceAccount) -> usize {
    maybe_size(&p.service_account) + maybe_size(&p.namespace) + text_size(&p.secret)
}

/// The footprint of patch operations.
pub(crate) fn patch_size(ops: &[PatchOp]) -> usize {
    ops.iter()
        .map(|op| {
            text_size(&op.path) + maybe_size(&op.from) + op.value.as_ref().map_or(PART, value_size)
        })
        .sum()
}

fn value_size(value: &Value) -> usize {
    PART + match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(value_size).sum(),
        Value::Object(members) => members.iter().map(|(k, v)| k.len() + value_size(v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Key {
        let mut key = [0; 32];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        key
    }

    #[test]
    fn a_full_set_starts_again_and_keeps_answering() {
        let answers = Answers::default();
        let answer: Arc<[Action]> = vec![Action::Warn("w".into())].into();
        for i in 0..MAX_ANSWERS + 10 {
            answers.keep(key(i), answer.clone());
        }
        let kept = answers.kept.lock().expect("lock").by_shown.len();
        assert_eq!(kept, 10, "emptied once at the bound");
        assert!(answers.get(&key(MAX_ANSWERS + 9)).is_some());
        assert!(answers.get(&key(0)).is_none());
        assert_eq!(answers.reused(), 1);
    }

    #[test]
    fn answers_are_bounded_by_bytes_too() {
        let answers = Answers::default();
        let warning = |n: usize| -> Arc<[Action]> { vec![Action::Warn("w".repeat(n))].into() };
        let half = MAX_ANSWER_BYTES / 2;
        answers.keep(key(1), warning(half));
        answers.keep(key(2), warning(half));
        let kept = answers.kept.lock().expect("lock").by_shown.len();
        assert_eq!(kept, 1, "the second emptied the set");
        answers.keep(key(3), warning(MAX_ANSWER_BYTES));
        assert!(answers.get(&key(3)).is_none(), "too large to keep");
        assert!(answers.get(&key(2)).is_some());
    }
}
