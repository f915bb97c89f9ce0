//! How one policy evaluation is bounded, in one home: the config's
//! `limits:` falls back to these, and the runtime's own defaults are these.

use std::time::Duration;

/// The deadline of one evaluation when `limits.timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The memory cap of one evaluation when `limits.memory` is not set.
pub const DEFAULT_MEMORY: usize = 64 << 20;

/// The largest policy module read when `limits.moduleSize` is not set
/// (componentize-py's components are about 40 MB).
pub const DEFAULT_MODULE_BYTES: u64 = 128 << 20;

/// Instance slots for `workers` threads evaluating at once: each holds one
/// instance at a time, two per worker leave room for a chain's checks,
/// and a few more for loading policies.
pub fn instance_slots(workers: usize) -> u32 {
    u32::try_from(workers.saturating_mul(2).saturating_add(4)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_grow_with_workers_and_saturate() {
        assert_eq!(instance_slots(1), 6);
        assert_eq!(instance_slots(8), 20);
        assert_eq!(instance_slots(usize::MAX), u32::MAX);
    }
}
