//! Answers a selective policy has given, by the parts of the resource it
//! was shown (see the `selective-policy` world).
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

use repoint_core::actions::Action;
use serde_json::Value;

/// Most answers one policy keeps.
const MAX_ANSWERS: usize = 4096;
/// Most bytes of answers (their texts, roughly) one policy keeps.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// The digest a shown resource is kept under.
pub(crate) type Key = [u8; 32];

/// One configured policy's answers, shared by every chain that holds it
/// and every thread that evaluates with it.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    kept: Mutex<Kept>,
    reused: AtomicU64,
}

#[derive(Debug, Default)]
struct Kept {
    by_shown: HashMap<Key, Arc<[Action]>>,
    bytes: usize,
}

impl Answers {
    /// The answer given to the resource shown as `key`, if kept.
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<[Action]>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let found = kept.by_shown.get(key).cloned();
        if found.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keep `actions` as the answer to the resource shown as `key`; an
    /// answer larger than a set holds is not kept.
    pub(crate) fn keep(&self, key: Key, actions: Arc<[Action]>) {
        let bytes = size_of::<Key>() + approximate_size(&actions);
        if bytes > MAX_ANSWER_BYTES {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.by_shown.len() >= MAX_ANSWERS || kept.bytes + bytes > MAX_ANSWER_BYTES {
            kept.by_shown.clear();
            kept.bytes = 0;
        }
        // Already there when two threads evaluated the same resource at once.
        if kept.by_shown.insert(key, actions).is_none() {
            kept.bytes += bytes;
        }
    }

    /// How many evaluations were answered from the kept answers.
    pub(crate) fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }
}

/// About how many bytes `actions` hold: their texts and a word or so for
/// each part.
fn approximate_size(actions: &[Action]) -> usize {
    const PART: usize = 32;
    let text = |s: &str| PART + s.len();
    let maybe = |s: &Option<String>| s.as_deref().map_or(PART, text);
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
            Action::EnsurePullSecret(e) => {
                text(&e.name)
                    + maybe(&e.namespace)
                    + e.registries.iter().map(|r| text(r)).sum::<usize>()
            }
            Action::PatchServiceAccount(p) => {
                maybe(&p.service_account) + maybe(&p.namespace) + text(&p.secret)
            }
            Action::JsonPatch(ops) => ops
                .iter()
                .map(|op| {
                    text(&op.path) + maybe(&op.from) + op.value.as_ref().map_or(PART, value_size)
                })
                .sum(),
        })
        .sum::<usize>()
        + PART
}

fn value_size(value: &Value) -> usize {
    const PART: usize = 32;
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
