//! The evaluation threads.
//!
//! A fixed set of threads runs evaluations handed over by the async
//! handlers. When an evaluation turns slow (a policy looping towards its
//! timeout), the runtime's hook calls [`demote_current_thread`]: the thread
//! drops to the lowest scheduling priority, so the requests that are not
//! stuck keep the cores while it runs out its time. A thread cannot raise
//! its priority again without privileges, so a demoted thread finishes its
//! evaluation, exits, and a fresh one takes its place. Fresh threads are
//! started by a supervisor thread, since a thread inherits its creator's
//! priority.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// Whether this thread lowered its own priority.
    static DEMOTED: Cell<bool> = const { Cell::new(false) };
}

/// The lowest priority of `setpriority` (nice 19).
const LOWEST: i32 = 19;

/// Lower the calling thread's priority to the lowest; an evaluation thread
/// that does so is replaced after its evaluation.
pub fn demote_current_thread() {
    let tid = rustix::thread::gettid();
    // Linux applies PRIO_PROCESS with a thread id to that thread alone.
    if rustix::process::setpriority_process(Some(tid), LOWEST).is_ok() {
        DEMOTED.with(|d| d.set(true));
    }
}

/// A fixed pool of evaluation threads.
#[derive(Debug)]
pub struct Pool {
    jobs: Sender<Job>,
}

impl Pool {
    /// `threads` evaluation threads.
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let (replace, replacements) = channel::<()>();
        for _ in 0..threads.max(1) {
            spawn_worker(queue.clone(), replace.clone());
        }
        // The supervisor starts a worker for each one that retires, and
        // ends once the pool is dropped and its workers are gone (it then
        // holds the last reference to the queue).
        let supervised = std::thread::Builder::new()
            .name("repoint-eval-supervisor".into())
            .spawn(move || {
                loop {
                    match replacements.recv_timeout(Duration::from_secs(1)) {
                        Ok(()) => spawn_worker(queue.clone(), replace.clone()),
                        Err(_) if Arc::strong_count(&queue) == 1 => return,
                        Err(_) => {}
                    }
                }
            });
        if let Err(e) = supervised {
            tracing::error!("cannot start the evaluation supervisor: {e}");
        }
        Self { jobs }
    }

    /// Run `f` on an evaluation thread. The answer is `None` if `f`
    /// panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (answer, receive) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(f());
        });
        self.jobs.send(job).ok()?;
        receive.await.ok()
    }
}

fn spawn_worker(queue: Arc<Mutex<Receiver<Job>>>, replace: Sender<()>) {
    let spawned = std::thread::Builder::new()
        .name("repoint-eval".into())
        .spawn(move || {
            loop {
                let job = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                    Ok(job) => job,
                    // The pool is gone.
                    Err(_) => return,
                };
                // A panicking job drops its answer sender; the caller sees
                // it, and the thread goes on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                if DEMOTED.with(Cell::get) {
                    let _ = replace.send(());
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start an evaluation thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of(tid: i32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("stat");
        // Fields after the command's closing parenthesis; nice is the 19th
        // field of the line, the 17th after it.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        after
            .split(' ')
            .nth(16)
            .and_then(|n| n.parse().ok())
            .expect("nice")
    }

    #[tokio::test]
    async fn a_demoted_thread_is_replaced_at_normal_priority() {
        let pool = Pool::new(1);
        let first = pool
            .run(|| {
                demote_current_thread();
                let tid = rustix::thread::gettid().as_raw_nonzero().get();
                (tid, nice_of(tid))
            })
            .await
            .expect("ran");
        assert_eq!(first.1, LOWEST);
        let second = pool
            .run(|| {
                let tid = rustix::thread::gettid().as_raw_nonzero().get();
                (tid, nice_of(tid))
            })
            .await
            .expect("ran");
        assert_ne!(second.0, first.0, "a fresh thread");
        assert_eq!(second.1, 0);
        // A panicking job answers None and the pool goes on.
        assert!(pool.run(|| panic!("on purpose")).await.is_none());
        assert_eq!(pool.run(|| 7).await, Some(7));
    }
}
