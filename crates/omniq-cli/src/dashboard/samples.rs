//! Queue counts over time: a small in-memory ring of samples, filled by a background
//! task, and the gauges it publishes to the metrics recorder.

use omniq::{QueueCounts, TaskStatus};
use std::collections::VecDeque;
use time::OffsetDateTime;

/// Counts of every queue at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: OffsetDateTime,
    pub(crate) counts: Vec<QueueCounts>,
}

impl Sample {
    /// All queues added up, for one status.
    pub(crate) fn total(&self, status: TaskStatus) -> u64 {
        self.counts.iter().map(|c| c.get(status)).sum()
    }
}

/// The last `capacity` samples, oldest first, and the last sampling error.
#[derive(Debug)]
pub(crate) struct Samples {
    ring: VecDeque<Sample>,
    capacity: usize,
    pub(crate) last_error: Option<String>,
}

impl Samples {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(2),
            last_error: None,
        }
    }

    pub(crate) fn push(&mut self, sample: Sample) {
        while self.ring.len() >= self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(sample);
        self.last_error = None;
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &Sample> + ExactSizeIterator {
        self.ring.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }
}

/// Publishes one sample as `omniq_queue_tasks{queue, status}` gauges.
pub(crate) fn publish(sample: &Sample) {
    for c in &sample.counts {
        for status in TaskStatus::ALL {
            metrics::gauge!(
                "omniq_queue_tasks",
                "queue" => c.queue.clone(),
                "status" => status.as_str()
            )
            .set(c.get(status) as f64);
        }
    }
}

/// The points of one series in a `width` × `height` box (y grows downwards), scaled
/// to `max`.
pub(crate) fn polyline(values: &[u64], max: u64, width: f64, height: f64) -> String {
    let n = values.len();
    let max = max.max(1) as f64;
    let step = if n > 1 { width / (n - 1) as f64 } else { 0.0 };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 * step;
            let y = height - (*v as f64 / max) * height;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pending: u64) -> Sample {
        Sample {
            at: OffsetDateTime::UNIX_EPOCH,
            counts: vec![QueueCounts {
                queue: "q".into(),
                pending,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let mut s = Samples::new(3);
        for n in 0..5 {
            s.push(sample(n));
        }
        let kept: Vec<u64> = s.iter().map(|x| x.total(TaskStatus::Pending)).collect();
        assert_eq!(kept, vec![2, 3, 4]);
    }

    #[test]
    fn polylines_scale_to_the_box() {
        assert_eq!(
            polyline(&[0, 5, 10], 10, 100.0, 50.0),
            "0.0,50.0 50.0,25.0 100.0,0.0"
        );
        assert_eq!(polyline(&[0], 0, 100.0, 50.0), "0.0,50.0");
    }
}
