//! Group commit's queue, apart from what a batch does: concurrent jobs with the same key (an
//! event) are coalesced into batches. Each key has a queue and a few workers; a worker takes
//! everything queued (no artificial wait: while one batch commits, the next one gathers), and
//! ends after idling, its queue made again on demand.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// A queued job and where its answer goes.
pub struct Pending<J, O> {
    pub job: J,
    pub reply: oneshot::Sender<O>,
}

type Queue<J, O> = mpsc::UnboundedSender<Pending<J, O>>;
type Receiver<J, O> = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending<J, O>>>>;

pub struct Coalescer<J, O> {
    queues: Mutex<HashMap<i64, Queue<J, O>>>,
    workers_per_key: usize,
    max_batch: usize,
    /// A worker with nothing to do for this long ends.
    idle: Duration,
}

impl<J: Clone + Send + 'static, O: Send + 'static> Coalescer<J, O> {
    pub fn new(workers_per_key: usize, max_batch: usize, idle: Duration) -> Coalescer<J, O> {
        Coalescer {
            queues: Mutex::new(HashMap::new()),
            workers_per_key: workers_per_key.max(1),
            max_batch: max_batch.max(1),
            idle,
        }
    }

    /// Queues `job` under `key` and waits for its answer. `run` answers a whole batch (every
    /// `reply` of it); a new queue's workers are started with it. `Err(job)` means the job never
    /// ran (its queue's workers ended before taking it), so the caller may run it itself
    /// without any risk of running it twice.
    pub async fn submit<R, Fut>(&self, key: i64, job: J, run: R) -> Result<O, J>
    where
        R: Fn(Vec<Pending<J, O>>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        // Kept for the rare case of a queue that ended; a job is small.
        let spare = job.clone();
        let mut pending = Pending { job, reply };
        for _ in 0..2 {
            let queue = self.queue(key, &run);
            match queue.send(pending) {
                Ok(()) => return answer.await.map_err(|_| spare),
                Err(mpsc::error::SendError(back)) => {
                    // Every worker of that queue ended; the next round makes a new one.
                    self.queues.lock().expect("batch queues").remove(&key);
                    pending = back;
                }
            }
        }
        Err(pending.job)
    }

    fn queue<R, Fut>(&self, key: i64, run: &R) -> Queue<J, O>
    where
        R: Fn(Vec<Pending<J, O>>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut queues = self.queues.lock().expect("batch queues");
        if let Some(queue) = queues.get(&key).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..self.workers_per_key {
            tokio::spawn(work(
                receiver.clone(),
                run.clone(),
                self.max_batch,
                self.idle,
            ));
        }
        queues.insert(key, sender.clone());
        sender
    }
}

/// One worker of a queue: takes a batch, runs it, again, until the queue idles.
async fn work<J, O, R, Fut>(queue: Receiver<J, O>, run: R, max_batch: usize, idle: Duration)
where
    R: Fn(Vec<Pending<J, O>>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let first = match tokio::time::timeout(idle, queue.recv()).await {
                Ok(Some(first)) => first,
                _ => return,
            };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match queue.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        run(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles each job, slowly, counting batches.
    fn doubler(
        batches: Arc<AtomicUsize>,
    ) -> impl Fn(Vec<Pending<u32, u32>>) -> futures::future::BoxFuture<'static, ()> + Clone {
        move |batch: Vec<Pending<u32, u32>>| {
            let batches = batches.clone();
            Box::pin(async move {
                batches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                for pending in batch {
                    let _ = pending.reply.send(pending.job * 2);
                }
            })
        }
    }

    #[tokio::test]
    async fn concurrent_jobs_share_batches_and_each_gets_its_own_answer() {
        let coalescer = Arc::new(Coalescer::new(2, 64, Duration::from_secs(5)));
        let batches = Arc::new(AtomicUsize::new(0));
        let run = doubler(batches.clone());
        let jobs = (0..100u32).map(|n| {
            let (coalescer, run) = (coalescer.clone(), run.clone());
            tokio::spawn(async move { (n, coalescer.submit(7, n, run).await) })
        });
        for done in futures::future::join_all(jobs).await {
            let (n, answer) = done.unwrap();
            assert_eq!(answer.ok(), Some(n * 2));
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(batches < 100, "{batches} batches for 100 concurrent jobs");
    }

    #[tokio::test]
    async fn an_idle_queue_ends_and_is_made_again_on_demand() {
        let coalescer = Coalescer::new(1, 8, Duration::from_millis(10));
        let batches = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            coalescer.submit(1, 3, doubler(batches.clone())).await.ok(),
            Some(6)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            coalescer.submit(1, 4, doubler(batches.clone())).await.ok(),
            Some(8)
        );
        assert_eq!(batches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_job_whose_batch_never_answers_comes_back_to_be_run_alone() {
        let coalescer = Coalescer::new(1, 8, Duration::from_secs(5));
        // A batch runner that drops its replies unanswered, as a worker that ended would.
        let dropper = |batch: Vec<Pending<u32, u32>>| async move { drop(batch) };
        assert_eq!(coalescer.submit(1, 5, dropper).await.err(), Some(5));
    }
}
