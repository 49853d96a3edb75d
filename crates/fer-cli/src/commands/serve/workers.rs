//! Threads for a request's CPU work (decoding, the face search, saliency) at normal priority.
//! The async threads that read requests and write answers run a little niced (`lower_priority`),
//! so a flood of requests that are only refused (503) cannot starve the work already admitted:
//! on a 2-core machine, wrk retrying at once without honouring Retry-After took most of the CPU
//! from the accepted requests before this split.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of worker threads fed by one queue.
pub struct Workers {
    jobs: mpsc::Sender<Job>,
}

impl Workers {
    pub fn start(threads: usize) -> std::io::Result<Workers> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new().name(format!("fer-worker-{i}")).spawn(move || {
                loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        // A panic fails that request (its answer channel is dropped), not the pool.
                        Ok(job) => drop(std::panic::catch_unwind(AssertUnwindSafe(job))),
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Workers { jobs })
    }

    /// Runs `work` on a worker thread and waits for its result without blocking the async
    /// threads; `Err` if it panicked.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        self.jobs.send(job).map_err(|_| "the worker threads have stopped".to_string())?;
        answer.await.map_err(|_| "the work failed (a panic; see the log)".to_string())
    }
}

/// Lowers the calling thread's scheduling priority by 5 (on Linux the nice value is per thread).
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: getpriority and setpriority only read and set the calling thread's nice value
    // (`who` 0); they touch no memory of ours.
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (now + 5).min(19));
    }
}
