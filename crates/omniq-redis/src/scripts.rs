//! The key layout and the Lua scripts.
//!
//! Every key of one queue shares the hash tag `{namespace:queue}`, so each script call
//! touches one cluster slot and queues spread over a cluster's masters:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `omniq:{ns:q}:t:<id>` | hash | a task: `d` the record (serializer-encoded), `m` its changing state in one string `status\|token\|attempts\|updated_at\|last_attempt_at\|lease_until\|cancel\|due\|priority\|seq\|eta\|runs` (see `lua/common.lua`), `rk` its schedule member, and when set `er` (its last error) and `uk` (its unique key) |
//! | `omniq:{ns:q}:r:<id>` | string | the latest result: `status\|finished_at\|attempts\|last_attempt_at\|len(error)\|len(payload) or -\|` then the error's and the payload's bytes (`SET … PXAT`) |
//! | `omniq:{ns:q}:sched` | zset | Pending tasks not yet promoted, by eta |
//! | `omniq:{ns:q}:ready` | zset | due tasks, all score 0, members `<99…-priority><eta><seq>:<id>` (lexicographic = claim order) |
//! | `omniq:{ns:q}:leases` | zset | Running tasks by lease expiry |
//! | `omniq:{ns:q}:s:<status>` | zset | task ids by status, score 0 (id order = listing order) |
//! | `omniq:{ns:q}:done` | zset | finished tasks by updated_at (purge, TTL trim) |
//! | `omniq:{ns:q}:res` | zset | results by finished_at (purge, TTL trim) |
//! | `omniq:{ns:q}:uniq` | hash | unique key → id of the live task holding it |
//! | `omniq:{ns}:queues` | set | the namespace's queue names (listing, counts, purge) |
//! | `omniq:ns:loc:<id>` | string | locator: the task's queue (no hash tag: spread over the cluster) |
//!
//! Pub/sub channel `omniq:ns:wake` carries wake-ups.

use fred::types::scripts::Script;

const COMMON: &str = include_str!("lua/common.lua");

/// The scripts, each the shared prelude plus its body, called by SHA.
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) claim: Script,
    pub(crate) heartbeat: Script,
    pub(crate) start: Script,
    pub(crate) complete: Script,
    pub(crate) fail: Script,
    pub(crate) release: Script,
    pub(crate) reschedule: Script,
    pub(crate) cancel: Script,
    pub(crate) purge: Script,
    pub(crate) counts: Script,
}

fn script(body: &str) -> Script {
    Script::from_lua(format!("{COMMON}\n{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            enqueue: script(include_str!("lua/enqueue.lua")),
            claim: script(include_str!("lua/claim.lua")),
            heartbeat: script(include_str!("lua/heartbeat.lua")),
            start: script(include_str!("lua/start.lua")),
            complete: script(include_str!("lua/complete.lua")),
            fail: script(include_str!("lua/fail.lua")),
            release: script(include_str!("lua/release.lua")),
            reschedule: script(include_str!("lua/reschedule.lua")),
            cancel: script(include_str!("lua/cancel.lua")),
            purge: script(include_str!("lua/purge.lua")),
            counts: script(include_str!("lua/counts.lua")),
        }
    }

    pub(crate) fn all(&self) -> [&Script; 11] {
        [
            &self.enqueue,
            &self.claim,
            &self.heartbeat,
            &self.start,
            &self.complete,
            &self.fail,
            &self.release,
            &self.reschedule,
            &self.cancel,
            &self.purge,
            &self.counts,
        ]
    }
}

/// Key names of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `omniq:{ns:` — a queue's keys start with this, the queue name and `}:`.
    pub(crate) queue_base: String,
    /// `omniq:ns:loc:` — locator keys.
    pub(crate) loc: String,
    /// `omniq:{ns}:queues`.
    pub(crate) queues: String,
    /// `omniq:ns:wake`.
    pub(crate) channel: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Self {
            queue_base: format!("omniq:{{{namespace}:"),
            loc: format!("omniq:{namespace}:loc:"),
            queues: format!("omniq:{{{namespace}}}:queues"),
            channel: format!("omniq:{namespace}:wake"),
        }
    }

    /// A key of `queue` (`ready`, `s:pending`, `t:<id>`, …).
    pub(crate) fn of(&self, queue: &str, suffix: &str) -> String {
        format!("{}{queue}}}:{suffix}", self.queue_base)
    }

    /// The locator of a task.
    pub(crate) fn locator(&self, id: &str) -> String {
        format!("{}{id}", self.loc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::util::redis_keyslot;

    #[test]
    fn a_queues_keys_share_one_slot_and_queues_spread() {
        let k = Keys::new("app");
        let slot = redis_keyslot(k.of("emails", "ready").as_bytes());
        for suffix in [
            "sched",
            "leases",
            "s:pending",
            "t:0190-x",
            "r:0190-x",
            "uniq",
        ] {
            assert_eq!(redis_keyslot(k.of("emails", suffix).as_bytes()), slot);
        }
        let others: std::collections::HashSet<u16> = (0..32)
            .map(|i| redis_keyslot(k.of(&format!("q{i}"), "ready").as_bytes()))
            .collect();
        assert!(others.len() > 16, "queues hash to different slots");
        assert_eq!(k.of("emails", "ready"), "omniq:{app:emails}:ready");
    }
}
