//! The one parallel map of the workspace: documents parsed, objects
//! evaluated and files rendered, with scoped threads, in input order.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The threads this machine runs at once (1 where that cannot be told):
/// every "one per core" default reads it here.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f(index, item)` for every item with up to `threads` scoped threads
/// (this one among them), results in item order. Threads take the next
/// item as they finish one, so a run of large items does not leave the
/// others idle. Where no thread can be spawned (WebAssembly) this thread
/// does everything; a panic in `f` is raised again here.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            done.push((i, f(i, item)));
        }
        done
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mut all = work();
        for h in helpers {
            all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        all
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_in_order_with_their_index() {
        let items: Vec<u32> = (0..100).collect();
        let out = super::map(&items, 4, |i, &x| (i, x * 2));
        assert_eq!(
            out,
            (0..100).map(|x| (x as usize, x * 2)).collect::<Vec<_>>()
        );
        assert!(super::map(&Vec::<u32>::new(), 4, |_, &x| x).is_empty());
    }
}
