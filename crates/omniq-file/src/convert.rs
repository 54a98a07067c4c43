//! The stored record: one version of a task's state, encoded with the configured
//! serializer. The latest result and the cancel flag live inside it, so every state
//! change — result included — is one conditional create.

use crate::error::Result;
use omniq_core::{Format, LeaseToken, Task, TaskError, TaskResult, TaskStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A held lease as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredLease {
    /// The fencing token: the version number of the claim that issued it.
    pub(crate) token: i64,
    /// The expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) until: OffsetDateTime,
}

/// One version of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The task as the API shows it.
    pub(crate) task: Task,
    /// The lease, while Running.
    #[serde(default)]
    pub(crate) lease: Option<StoredLease>,
    /// Cancellation was requested while Running.
    #[serde(default)]
    pub(crate) cancel: bool,
    /// The latest finished run's result.
    #[serde(default)]
    pub(crate) result: Option<TaskResult>,
    /// The enqueue order (ties of priority and eta are claimed in this order).
    #[serde(default)]
    pub(crate) seq: u64,
    /// Version 1 of a task enqueued in a batch of several: the batch's id. The task
    /// exists only once the batch's commit marker does (all-or-nothing enqueue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) batch: Option<String>,
    /// A fresh value per write on stores whose creates are verified by reading back, so
    /// two writers never write the same bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<uuid::Uuid>,
    /// The name of the index file that lists this version (ready while Pending, lease
    /// while Running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) index: Option<String>,
}

impl Record {
    pub(crate) fn encode(&self, format: Format) -> Result<Vec<u8>> {
        Ok(format.encode(self)?)
    }

    pub(crate) fn decode(format: Format, bytes: &[u8]) -> Result<Self> {
        Ok(format.decode(bytes)?)
    }

    /// The lease token when the task is Running under `token`.
    pub(crate) fn holds(&self, token: LeaseToken) -> bool {
        self.task.status == TaskStatus::Running && self.lease.is_some_and(|l| l.token == token.0)
    }

    /// A result of the task's current run with `status`.
    pub(crate) fn run_result(
        &self,
        status: TaskStatus,
        result: Option<omniq_core::Payload>,
        error: Option<TaskError>,
        now: OffsetDateTime,
    ) -> TaskResult {
        TaskResult {
            task_id: self.task.id,
            status,
            result,
            error,
            finished_at: now,
            attempts: self.task.attempts,
            last_attempt_at: self.task.last_attempt_at,
        }
    }

    /// Ends the task Cancelled at `now`, storing a Cancelled result with its last error.
    pub(crate) fn end_cancelled(&mut self, now: OffsetDateTime) {
        let error = self.task.error.clone();
        self.result = Some(self.run_result(TaskStatus::Cancelled, None, error, now));
        self.task.status = TaskStatus::Cancelled;
        self.task.updated_at = now;
        self.lease = None;
        self.cancel = false;
    }
}

/// One version of a task, with its number.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    pub(crate) version: u64,
    pub(crate) record: Record,
}
