//! The per-set guard that keeps a misbehaving policy from taking the
//! server with it: each set's share of the workers, the throttle and the
//! circuit breaker.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::PolicySet;

const STRIKES_TO_OPEN: u32 = 3;
/// How long an open circuit answers by the failure policy alone.
const OPEN_FOR: Duration = Duration::from_secs(5);

/// A policy set as served: its chain, and what keeps a misbehaving policy
/// from taking the server with it.
///
/// - **Share.** When several sets are served, one set holds at most half
///   the workers, so a set whose policy loops cannot occupy them all.
/// - **Throttle.** After an evaluation runs out of time, the set runs one
///   evaluation at a time (the rest are answered by its failure policy at
///   once) until one completes in time.
/// - **Circuit.** After [`STRIKES_TO_OPEN`] in a row run out of time, the
///   set is answered by its failure policy alone for [`OPEN_FOR`], then
///   tries one evaluation again. A policy that always loops then burns a
///   core for one timeout in every few seconds, not constantly.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) set: PolicySet,
    /// This set's share of the workers.
    share: Arc<Semaphore>,
    /// The one evaluation a throttled set may run.
    solo: Arc<Semaphore>,
    /// Evaluations in a row that ran out of time (0: healthy).
    strikes: AtomicU32,
    /// While the circuit is open: until when.
    open_until: Mutex<Option<Instant>>,
}

impl Served {
    /// `set`, holding at most `share` workers at once.
    pub(crate) fn new(set: PolicySet, share: usize) -> Self {
        Self {
            set,
            share: Arc::new(Semaphore::new(share)),
            solo: Arc::new(Semaphore::new(1)),
            strikes: AtomicU32::new(0),
            open_until: Mutex::new(None),
        }
    }

    /// This set's share of the workers.
    pub(crate) fn share(&self) -> &Arc<Semaphore> {
        &self.share
    }

    /// Why this set cannot evaluate now, if it cannot; otherwise the solo
    /// permit a throttled set must hold.
    pub(crate) fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, String> {
        let strikes = self.strikes.load(Ordering::Relaxed);
        if strikes == 0 {
            return Ok(None);
        }
        let open_until = *self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        if open_until.is_some_and(|t| Instant::now() < t) {
            return Err(format!(
                "{strikes} evaluations of this set in a row ran out of time; it is answered by its failure policy for {OPEN_FOR:?} before trying again"
            ));
        }
        self.solo.clone().try_acquire_owned().map(Some).map_err(|_| {
            "an evaluation of this set ran out of time; it runs one at a time until one completes in time".to_string()
        })
    }

    /// An evaluation ran out of time.
    pub(crate) fn strike(&self) {
        let strikes = self.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if strikes >= STRIKES_TO_OPEN {
            *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + OPEN_FOR);
        }
    }

    /// An evaluation completed in time.
    pub(crate) fn recovered(&self) {
        if self.strikes.swap(0, Ordering::Relaxed) > 0 {
            *self.open_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// The webhook's state, shared by every request.
#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Served {
        let options = repoint_runtime::RuntimeOptions {
            cache_dir: None,
            concurrency: 1,
            ..Default::default()
        };
        let runtime =
            repoint_runtime::Runtime::new(options, Arc::new(repoint_runtime::probe::Offline))
                .expect("runtime");
        let set = PolicySet {
            name: "s".into(),
            chain: Arc::new(runtime)
                .chain(Vec::new(), Vec::new())
                .expect("an empty chain"),
            failure_policy: crate::FailurePolicy::Fail,
        };
        Served::new(set, 2)
    }

    #[test]
    fn throttle_and_circuit_open_expire_and_recover() {
        let s = served();
        assert!(matches!(s.admit(), Ok(None)), "healthy: no solo permit");
        s.strike();
        let solo = s.admit().expect("throttled: one at a time").expect("solo");
        assert!(s.admit().is_err(), "a second one at once is turned away");
        drop(solo);
        assert!(matches!(s.admit(), Ok(Some(_))));
        // Completing in time ends the throttle.
        s.recovered();
        assert!(matches!(s.admit(), Ok(None)));
        // Three in a row open the circuit, even with the solo permit free.
        for _ in 0..STRIKES_TO_OPEN {
            s.strike();
        }
        let why = s.admit().expect_err("open");
        assert!(why.contains("3 evaluations"), "{why}");
        // Once the open period has passed, one evaluation is tried again.
        *s.open_until.lock().expect("lock") = Some(Instant::now() - Duration::from_millis(1));
        assert!(matches!(s.admit(), Ok(Some(_))));
        s.recovered();
        assert!(matches!(s.admit(), Ok(None)));
        assert!(s.open_until.lock().expect("lock").is_none());
    }
}
