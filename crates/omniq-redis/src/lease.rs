//! The fenced lease writes: heartbeat, complete, fail and release. Each batch is one
//! script call (one per queue on a cluster); the script checks `status = running` and
//! the token per item, so a stale worker changes nothing, and answers an [`Outcome`]
//! per item, applying a batch's items in order.

use crate::claim::ended_pairs;
use crate::convert::{arg, array, bytes, text};
use crate::error::{Result, corrupt};
use crate::storage::{RedisStorage, us_arg};
use fred::types::Value;
use fred::types::scripts::Script;
use omniq_core::{Completion, FailAction, Failure, LeaseRef, Outcome, TaskId};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Where one script call goes: its routing key, and its items' positions with their
/// queue arguments ('' = the script reads the task's locator).
pub(crate) struct Route {
    pub(crate) key: String,
    pub(crate) items: Vec<(usize, String)>,
}

impl RedisStorage {
    /// Groups tasks into script calls: all in one on a single server; on a cluster one
    /// per queue. A task's queue comes from this instance's claims when it holds the
    /// task, else from its locator (read here on a cluster, by the script on a single
    /// server). Positions without a locator are unknown tasks.
    pub(crate) async fn route(&self, ids: &[TaskId]) -> Result<(Vec<Route>, Vec<usize>)> {
        let known: Vec<Option<String>> = ids
            .iter()
            .map(|id| self.held_queue(id).map(|q| q.to_string()))
            .collect();
        if !self.cluster() {
            let items = known
                .into_iter()
                .enumerate()
                .map(|(i, q)| (i, q.unwrap_or_default()))
                .collect();
            let all = Route {
                key: self.inner.keys.queues.clone(),
                items,
            };
            return Ok((vec![all], Vec::new()));
        }
        let unknown: Vec<usize> = (0..ids.len()).filter(|i| known[*i].is_none()).collect();
        let mut queues = known;
        if !unknown.is_empty() {
            let look: Vec<TaskId> = unknown.iter().map(|i| ids[*i]).collect();
            for (i, q) in unknown.into_iter().zip(self.locate(&look).await?) {
                queues[i] = q;
            }
        }
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut missing = Vec::new();
        for (i, q) in queues.into_iter().enumerate() {
            match q {
                Some(q) => groups.entry(q).or_default().push(i),
                None => missing.push(i),
            }
        }
        let routes = groups
            .into_iter()
            .map(|(queue, positions)| Route {
                key: self.inner.keys.of(&queue, "ready"),
                items: positions.into_iter().map(|p| (p, queue.clone())).collect(),
            })
            .collect();
        Ok((routes, missing))
    }

    /// Runs a lease script over `ids`: `head` are its leading arguments, `item` pushes
    /// one item's arguments after its queue argument. One outcome per id, in order.
    async fn lease_script(
        &self,
        script: &Script,
        ids: &[TaskId],
        head: &[Value],
        item: impl Fn(usize, &mut Vec<Value>),
    ) -> Result<Vec<Outcome>> {
        self.check_open()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (routes, missing) = self.route(ids).await?;
        let mut out = vec![Outcome::NotFound; ids.len()];
        let calls = routes.into_iter().map(|route| {
            let mut args = self.common_args(head.len() + 1 + route.items.len() * 7);
            args.extend_from_slice(head);
            args.push(arg(route.items.len().to_string()));
            for (p, queue) in &route.items {
                args.push(arg(queue.as_str()));
                item(*p, &mut args);
            }
            let positions: Vec<usize> = route.items.iter().map(|(p, _)| *p).collect();
            async move {
                let reply = self.eval(script, route.key, args).await?;
                Ok::<_, crate::error::Error>((positions, reply))
            }
        });
        for (positions, reply) in futures::future::try_join_all(calls).await? {
            let (codes, ended, wake) = match reply {
                Value::Array(parts) => {
                    let mut it = parts.into_iter();
                    let codes = it.next().map(|v| text(&v)).unwrap_or_default();
                    let ended = it.next().map(array).unwrap_or_default();
                    let wake = it.next().map(|v| text(&v)).unwrap_or_default();
                    (codes, ended, wake)
                }
                other => (text(&other), Vec::new(), String::new()),
            };
            if codes.len() != positions.len() {
                return Err(corrupt(format!(
                    "lease script answered {} of {} items",
                    codes.len(),
                    positions.len()
                )));
            }
            for (p, c) in positions.into_iter().zip(codes.chars()) {
                out[p] = match c {
                    'o' => Outcome::Ok,
                    'c' => Outcome::CancelRequested,
                    'l' => Outcome::LeaseLost,
                    'n' => Outcome::NotFound,
                    other => return Err(corrupt(format!("lease outcome {other:?}"))),
                };
            }
            self.expire_locators(&ended_pairs(ended)?).await;
            self.deliver(&wake);
        }
        for p in missing {
            out[p] = Outcome::NotFound;
        }
        Ok(out)
    }

    pub(crate) async fn extend_leases(
        &self,
        leases: &[LeaseRef],
        until: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        let ids: Vec<TaskId> = leases.iter().map(|l| l.task_id).collect();
        self.lease_script(
            &self.inner.scripts.heartbeat,
            &ids,
            &[us_arg(until)],
            |i, a| {
                a.push(arg(leases[i].task_id.to_string()));
                a.push(arg(leases[i].token.0.to_string()));
            },
        )
        .await
    }

    pub(crate) async fn record_starts(&self, leases: &[LeaseRef]) -> Result<Vec<Outcome>> {
        let ids: Vec<TaskId> = leases.iter().map(|l| l.task_id).collect();
        self.lease_script(&self.inner.scripts.start, &ids, &[], |i, a| {
            a.push(arg(leases[i].task_id.to_string()));
            a.push(arg(leases[i].token.0.to_string()));
        })
        .await
    }

    pub(crate) async fn release_leases(
        &self,
        leases: &[LeaseRef],
        now: OffsetDateTime,
    ) -> Result<Vec<Outcome>> {
        let ids: Vec<TaskId> = leases.iter().map(|l| l.task_id).collect();
        let out = self
            .lease_script(&self.inner.scripts.release, &ids, &[us_arg(now)], |i, a| {
                a.push(arg(leases[i].task_id.to_string()));
                a.push(arg(leases[i].token.0.to_string()));
            })
            .await;
        self.forget(&ids);
        out
    }

    pub(crate) async fn complete_runs(&self, items: Vec<Completion>) -> Result<Vec<Outcome>> {
        let ids: Vec<TaskId> = items.iter().map(|c| c.lease.task_id).collect();
        let out = self
            .lease_script(&self.inner.scripts.complete, &ids, &[], |i, a| {
                let c = &items[i];
                a.extend([
                    arg(c.lease.task_id.to_string()),
                    arg(c.lease.token.0.to_string()),
                    us_arg(c.now),
                    arg(if c.result.is_some() { "1" } else { "0" }),
                    c.result
                        .as_ref()
                        .map(|p| bytes(p.as_bytes()))
                        .unwrap_or_else(|| arg("")),
                    c.next_run.map(us_arg).unwrap_or_else(|| arg("")),
                ]);
            })
            .await;
        self.forget(&ids);
        out
    }

    pub(crate) async fn fail_runs(&self, items: Vec<Failure>) -> Result<Vec<Outcome>> {
        let format = self.format();
        let errors = items
            .iter()
            .map(|f| format.encode(&f.error))
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<TaskId> = items.iter().map(|f| f.lease.task_id).collect();
        let out = self
            .lease_script(&self.inner.scripts.fail, &ids, &[], |i, a| {
                let f = &items[i];
                let (action, at) = match f.action {
                    FailAction::Retry { at } => ("r", us_arg(at)),
                    FailAction::NextRun { at } => ("n", us_arg(at)),
                    FailAction::Fail => ("f", arg("")),
                    FailAction::Defer { at } => ("d", us_arg(at)),
                };
                a.extend([
                    arg(f.lease.task_id.to_string()),
                    arg(f.lease.token.0.to_string()),
                    us_arg(f.now),
                    bytes(&errors[i]),
                    arg(action),
                    at,
                ]);
            })
            .await;
        self.forget(&ids);
        out
    }
}
