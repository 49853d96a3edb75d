//! The inference queue: admission with a hard limit (back-pressure), and one thread that owns
//! the model and classifies the faces of requests that arrive together as one batch, as Triton's
//! dynamic batcher does.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use fer_data::Dataset;
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::photos::Classifier;

/// A request's place in the inference queue; dropping it (answered, failed or abandoned by its
/// client) frees the place.
pub struct Ticket(Arc<Metrics>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.queue_depth.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place in the queue, or `None` when `--max-queue` requests are already waiting: the caller
/// answers 503 at once instead of letting the queue, and every client's wait, grow.
pub fn admit(metrics: &Arc<Metrics>) -> Option<Ticket> {
    let limit = metrics.queue_limit;
    metrics
        .queue_depth
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |depth| (depth < limit).then_some(depth + 1))
        .ok()
        .map(|_| Ticket(metrics.clone()))
}

/// How the batcher gathers faces.
#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// How long the first request of a batch waits for others; zero classifies each request
    /// alone.
    pub wait: Duration,
    /// A batch closes early once it holds this many faces.
    pub max_faces: usize,
}

struct Job {
    crops: Dataset,
    reply: oneshot::Sender<Result<Vec<[f32; 7]>, String>>,
}

/// The handle requests use to reach the model thread.
pub struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the model thread; it runs until every `Batcher` handle is dropped.
    pub fn start(classifier: Classifier, policy: BatchPolicy, metrics: Arc<Metrics>) -> std::io::Result<Batcher> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("fer-batcher".into())
            .spawn(move || run(&classifier, &queue, policy, &metrics))?;
        Ok(Batcher { jobs })
    }

    /// The probabilities of each face in `crops`, classified with whatever arrives in the same
    /// window.
    pub async fn classify(&self, crops: Dataset) -> Result<Vec<[f32; 7]>, String> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { crops, reply }).map_err(|_| "the model thread has stopped".to_string())?;
        answer.await.map_err(|_| "the model thread has stopped".to_string())?
    }
}

fn run(classifier: &Classifier, queue: &mpsc::Receiver<Job>, policy: BatchPolicy, metrics: &Metrics) {
    while let Ok(first) = queue.recv() {
        let batch = gather(first, queue, policy);
        let mut faces = Dataset::new();
        for job in &batch {
            for i in 0..job.crops.len() {
                faces.push(job.crops.image(i), None, "photo");
            }
        }
        metrics.record_batch(batch.len(), faces.len());
        // A panic in the model must fail this batch's requests, not every later one.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| classifier.probabilities(&faces)));
        let mut probabilities = match result {
            Ok(p) => p.into_iter(),
            Err(_) => {
                for job in batch {
                    let _ = job.reply.send(Err("the model failed on this batch".to_string()));
                }
                continue;
            }
        };
        for job in batch {
            let mine: Vec<[f32; 7]> = probabilities.by_ref().take(job.crops.len()).collect();
            // The client may have gone; its answer is simply dropped.
            let _ = job.reply.send(Ok(mine));
        }
    }
}

/// `first` plus the jobs that arrive within the policy's wait, up to its face count.
fn gather(first: Job, queue: &mpsc::Receiver<Job>, policy: BatchPolicy) -> Vec<Job> {
    let mut faces = first.crops.len();
    let mut batch = vec![first];
    let deadline = Instant::now() + policy.wait;
    while faces < policy.max_faces {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match queue.recv_timeout(left) {
            Ok(job) => {
                faces += job.crops.len();
                batch.push(job);
            }
            Err(_) => break,
        }
    }
    batch
}
