//! Everything off the hot path: reads (`get_task`, `get_result`, `list_tasks`,
//! `counts`), single-task changes (`reschedule`, `cancel`) and cleanup
//! (`purge_results`). Namespace-wide calls iterate the namespace's queues.

use crate::claim::ended_pairs;
use crate::convert::{self, TASK_FIELDS, arg, array, int, now_micros, text};
use crate::error::{Error, Result, corrupt};
use crate::storage::{RedisStorage, us_arg, validate_queue};
use fred::prelude::{ClientLike, HashesInterface, KeysInterface, SetsInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use omniq_core::{
    CancelOutcome, Cursor, Page, QueueCounts, Task, TaskFilter, TaskId, TaskResult, TaskStatus,
};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Most tasks (and results) one purge call removes per queue; it runs until done.
const PURGE_BATCH: usize = 1000;

impl RedisStorage {
    /// The queue a task lives in (from its locator).
    async fn queue_of(&self, id: &TaskId) -> Result<Option<String>> {
        Ok(self.locate(std::slice::from_ref(id)).await?.pop().flatten())
    }

    pub(crate) async fn read_task(&self, id: &TaskId) -> Result<Option<Task>> {
        let Some(queue) = self.queue_of(id).await? else {
            return Ok(None);
        };
        self.read_tasks(&queue, &[id.to_string()])
            .await
            .map(|mut v| v.pop().flatten())
    }

    /// Tasks of one queue by id (`None` for those that are gone).
    async fn read_tasks(&self, queue: &str, ids: &[String]) -> Result<Vec<Option<Task>>> {
        let client = self.client()?;
        let keys = &self.inner.keys;
        let reads = ids.iter().map(|id| {
            client
                .hmget::<Vec<Value>, _, _>(keys.of(queue, &format!("t:{id}")), TASK_FIELDS.to_vec())
        });
        let format = self.format();
        futures::future::try_join_all(reads)
            .await?
            .iter()
            .map(|fields| convert::task_from_fields(fields, format))
            .collect()
    }

    pub(crate) async fn move_task(
        &self,
        id: &TaskId,
        new_eta: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<()> {
        let (routes, _) = self.route(std::slice::from_ref(id)).await?;
        let Some(route) = routes.into_iter().next() else {
            return Err(Error::NotFound(*id));
        };
        let queue = route
            .items
            .first()
            .map(|(_, q)| q.clone())
            .unwrap_or_default();
        let mut args = self.common_args(4);
        args.extend([
            arg(queue.as_str()),
            arg(id.to_string()),
            us_arg(new_eta),
            us_arg(now),
        ]);
        let reply = array(
            self.eval(&self.inner.scripts.reschedule, route.key, args)
                .await?,
        );
        let code = reply.first().map(text).unwrap_or_default();
        if let Some(status) = code.strip_prefix("x:") {
            return Err(Error::Finished {
                id: *id,
                status: convert::status(status)?,
            });
        }
        if code == "n" {
            return Err(Error::NotFound(*id));
        }
        if let Some(holder) = code.strip_prefix("k:") {
            return Err(Error::KeyHeld {
                id: *id,
                holder: holder.to_string(),
            });
        }
        if code == "o:failed" && self.cluster() {
            // Live again: its locator must not expire with the failed run.
            self.client()?
                .persist::<(), _>(self.inner.keys.locator(&id.to_string()))
                .await?;
        }
        self.deliver(&reply.get(1).map(text).unwrap_or_default());
        Ok(())
    }

    pub(crate) async fn read_result(&self, id: &TaskId) -> Result<Option<TaskResult>> {
        let Some(queue) = self.queue_of(id).await? else {
            return Ok(None);
        };
        let key = self.inner.keys.of(&queue, &format!("r:{id}"));
        let stored: Option<Vec<u8>> = self.client()?.get(key).await?;
        let result = stored
            .map(|b| convert::result_from_bytes(*id, &b, self.format()))
            .transpose()?;
        // Redis expires results at `finished_at + ttl`; the check makes the edge exact.
        let cutoff = now_micros().saturating_sub(self.inner.result_ttl_us);
        Ok(result.filter(|r| convert::micros(r.finished_at) >= cutoff))
    }

    pub(crate) async fn cancel_task(
        &self,
        id: &TaskId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome> {
        let (routes, _) = self.route(std::slice::from_ref(id)).await?;
        let Some(route) = routes.into_iter().next() else {
            return Err(Error::NotFound(*id));
        };
        let queue = route
            .items
            .first()
            .map(|(_, q)| q.clone())
            .unwrap_or_default();
        let mut args = self.common_args(3);
        args.extend([arg(queue.as_str()), arg(id.to_string()), us_arg(now)]);
        let reply = array(
            self.eval(&self.inner.scripts.cancel, route.key, args)
                .await?,
        );
        let mut it = reply.into_iter();
        let code = it.next().map(|v| text(&v)).unwrap_or_default();
        let ended = ended_pairs(it.next().map(array).unwrap_or_default())?;
        self.expire_locators(&ended).await;
        self.deliver(&it.next().map(|v| text(&v)).unwrap_or_default());
        match code.as_str() {
            "n" => Err(Error::NotFound(*id)),
            "c" => Ok(CancelOutcome::Cancelled),
            "r" => Ok(CancelOutcome::Requested),
            other => match other.strip_prefix("x:") {
                Some(status) => Ok(CancelOutcome::AlreadyFinished(convert::status(status)?)),
                None => Err(corrupt(format!("cancel script replied {other:?}"))),
            },
        }
    }

    /// The namespace's queues, sorted by name.
    async fn queues(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .client()?
            .smembers(self.inner.keys.queues.as_str())
            .await?;
        names.sort();
        Ok(names)
    }

    pub(crate) async fn list_page(&self, filter: TaskFilter) -> Result<Page<Task>> {
        self.check_open()?;
        if let Some(q) = &filter.queue {
            validate_queue(q)?;
        }
        if filter.limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let queues = match &filter.queue {
            Some(q) => vec![q.clone()],
            None => self.queues().await?,
        };
        let statuses: Vec<TaskStatus> = match filter.status {
            Some(s) => vec![s],
            None => TaskStatus::ALL.to_vec(),
        };
        // Ids sort as UUID bytes, so each status set read by lex range is id order.
        let fetch = filter.limit.saturating_add(1);
        let min = match &filter.cursor {
            Some(c) => format!("({}", c.0),
            None => "-".to_string(),
        };
        let client = self.client()?;
        let keys = &self.inner.keys;
        let cmd = CustomCommand::new_static("ZRANGEBYLEX", ClusterHash::FirstKey, false);
        let mut reads = Vec::new();
        let mut owners = Vec::new();
        for q in &queues {
            for s in &statuses {
                let args: Vec<Value> = vec![
                    arg(keys.of(q, &format!("s:{}", s.as_str()))),
                    arg(min.as_str()),
                    arg("+"),
                    arg("LIMIT"),
                    arg("0"),
                    arg(fetch.to_string()),
                ];
                reads.push(client.custom::<Value, _>(cmd.clone(), args));
                owners.push(q.as_str());
            }
        }
        let mut candidates: Vec<(String, &str)> = Vec::new();
        for (reply, q) in futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .zip(owners)
        {
            candidates.extend(array(reply).iter().map(|v| (text(v), q)));
        }
        candidates.sort();
        candidates.dedup_by(|a, b| a.0 == b.0);
        let more = candidates.len() > filter.limit;
        candidates.truncate(filter.limit);
        let mut by_queue: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (id, q) in &candidates {
            by_queue.entry(q).or_default().push(id.clone());
        }
        let mut found: BTreeMap<String, Task> = BTreeMap::new();
        for (q, ids) in by_queue {
            for (id, t) in ids.iter().zip(self.read_tasks(q, &ids).await?) {
                if let Some(t) = t {
                    found.insert(id.clone(), t);
                }
            }
        }
        let items: Vec<Task> = candidates
            .iter()
            .filter_map(|(id, _)| found.remove(id))
            .collect();
        let next_cursor = if more {
            candidates
                .last()
                .map(|(id, _)| convert::task_id(id).map(Cursor))
                .transpose()?
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub(crate) async fn count_tasks(&self, queue: Option<&str>) -> Result<Vec<QueueCounts>> {
        self.check_open()?;
        if let Some(q) = queue {
            validate_queue(q)?;
        }
        let queues = match queue {
            Some(q) => vec![q.to_string()],
            None => self.queues().await?,
        };
        let calls = queues.iter().map(|q| {
            let mut args = self.common_args(1);
            args.push(arg(q.as_str()));
            self.eval(
                &self.inner.scripts.counts,
                self.inner.keys.of(q, "ready"),
                args,
            )
        });
        let mut out = Vec::with_capacity(queues.len());
        for (q, reply) in queues
            .iter()
            .zip(futures::future::try_join_all(calls).await?)
        {
            let n = array(reply)
                .iter()
                .map(|v| int(v, "count").map(|n| u64::try_from(n).unwrap_or(0)))
                .collect::<Result<Vec<u64>>>()?;
            let [pending, running, success, failed, cancelled] = n[..] else {
                return Err(corrupt(format!("counts script replied {} values", n.len())));
            };
            let c = QueueCounts {
                queue: q.clone(),
                pending,
                running,
                success,
                failed,
                cancelled,
            };
            if queue.is_some() || c.total() > 0 {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub(crate) async fn purge(&self, older_than: OffsetDateTime) -> Result<u64> {
        self.check_open()?;
        let cutoff = convert::micros(older_than).to_string();
        let mut removed = 0u64;
        for q in self.queues().await? {
            loop {
                let mut args = self.common_args(3);
                args.extend([
                    arg(q.as_str()),
                    arg(cutoff.as_str()),
                    arg(PURGE_BATCH.to_string()),
                ]);
                let reply = array(
                    self.eval(
                        &self.inner.scripts.purge,
                        self.inner.keys.of(&q, "ready"),
                        args,
                    )
                    .await?,
                );
                let mut it = reply.into_iter();
                let n = it
                    .next()
                    .map(|v| int(&v, "removed"))
                    .transpose()?
                    .unwrap_or(0);
                removed += u64::try_from(n).unwrap_or(0);
                let more = it.next().map(|v| text(&v)).unwrap_or_default() == "1";
                if self.cluster() {
                    let ids: Vec<String> = it.map(|v| text(&v)).collect();
                    self.delete_locators(&ids).await?;
                }
                if !more {
                    break;
                }
            }
        }
        Ok(removed)
    }

    async fn delete_locators(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let client = self.client()?;
        let keys = &self.inner.keys;
        let dels = ids.iter().map(|id| client.del::<(), _>(keys.locator(id)));
        futures::future::try_join_all(dels).await?;
        Ok(())
    }
}
