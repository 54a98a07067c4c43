//! `conformance_tests!`: one `#[test]` per case.
//!
//! The id list below must match [`crate::cases()`]; a unit test checks it. When a case
//! is added to the registry, add its id here too.

/// Expands into `mod conformance` with one `#[test] fn <id>()` per case, each running
/// that case with fresh instances from the factory expression (evaluated per test).
///
/// Use it in an ordinary (`harness = true`) test target:
///
/// ```
/// # use std::sync::Arc;
/// # use omniq_conformance::{StorageFactory, async_trait};
/// # use omniq_core::{Storage, StorageError, StorageErrorKind};
/// # struct MyFactory;
/// # #[async_trait]
/// # impl StorageFactory for MyFactory {
/// #     fn backend(&self) -> &'static str { "mine" }
/// #     async fn create(&self) -> Result<Arc<dyn Storage>, StorageError> {
/// #         Err(StorageError::new(StorageErrorKind::Unavailable, "mine", "down"))
/// #     }
/// # }
/// omniq_conformance::conformance_tests!(MyFactory);
/// # fn main() {}
/// ```
///
/// A failed case panics with its reason; a skipped one (capability, broken instance,
/// service unavailable without `OMNIQ_REQUIRE_SERVICES=1`) returns early after
/// printing why — libtest cannot mark a test ignored at run time, so **a skip shows as
/// `ok` here**. Set `OMNIQ_CONFORMANCE_STRICT=1` to make skips fail, and use
/// [`run`](crate::run) for the checklist/JSON report, which reports skips as skips.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__conformance_case_list!(__conformance_tests_impl($factory));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests_impl {
    (($factory:expr) $($id:ident),* $(,)?) => {
        /// The OmniQ backend conformance cases, one test each.
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $id() {
                    $crate::__run_case($factory, stringify!($id));
                }
            )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_ids_impl {
    (() $($id:ident),* $(,)?) => {
        &[$(stringify!($id)),*]
    };
}

/// Calls `$crate::$callback!{ (args) id, id, … }` with every case id, in registry order.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_list {
    ($callback:ident($($args:tt)*)) => {
        $crate::$callback! {
            ($($args)*)
            get_task_returns_stored_task,
            get_task_returns_none_for_missing_id,
            get_task_raises_storage_error_on_failure,
            reschedule_updates_eta,
            reschedule_sets_status_pending,
            reschedule_fences_running_task,
            reschedule_missing_task_is_not_found,
            reschedule_raises_storage_error_on_failure,
            reschedule_finished_task_is_conflict,
            retry_fail_reschedules_with_attempts_kept,
            interval_completion_reschedules_next_run,
            task_lifecycle_enqueue_claim_complete,
            interval_round_trips,
            old_records_with_int_interval_still_work,
            interval_final_failure_moves_to_next_run,
            task_error_persisted_on_task_and_result,
            task_error_context_persisted,
            task_error_retry_count_survives_retries,
            old_records_without_error_still_work,
            atomic_claim_under_concurrent_claimers,
            release_hands_back_unstarted_claim,
            claim_orders_priority_then_eta_then_fifo,
            eta_is_respected,
            live_lease_is_not_redelivered,
            lease_expiry_redelivers,
            fenced_complete_ignores_stale_worker,
            fenced_fail_ignores_stale_worker,
            fenced_heartbeat_ignores_stale_worker,
            heartbeat_extends_lease,
            heartbeat_reports_not_found_for_missing_task,
            batch_complete_reports_per_item_outcomes,
            batch_enqueue_returns_ids_in_order,
            unique_key_duplicate_returns_existing_id,
            unique_key_is_free_after_task_finishes,
            namespaces_are_isolated,
            purge_results_removes_old_results,
            get_result_is_none_until_run_finishes,
            list_tasks_filters_and_paginates,
            counts_by_queue_and_status,
            cancel_pending_task,
            cancel_running_task_is_requested,
            cancel_missing_task_is_not_found,
            cancel_finished_task_reports_already_finished,
            close_makes_later_calls_fail_closed,
            subscribe_wakes_on_enqueue,
            subscribe_wakes_on_finish,
            complete_next_run_on_cancel_requested_ends_series,
            fail_on_cancel_requested_ends_cancelled,
            expired_lease_of_cancel_requested_task_is_not_redelivered,
            cancel_failed_task,
            complete_clears_task_error,
            batch_enqueue_is_all_or_nothing,
            claim_from_several_queues,
            created_at_without_eta_gates_claim,
            release_duplicate_items_apply_once,
            batch_fail_reports_per_item_outcomes,
            close_fails_every_operation,
            invalid_queue_name_is_config_error,
            claim_sets_updated_at_and_last_attempt_at,
            release_of_cancel_requested_task_ends_cancelled,
            reschedule_clears_cancel_request,
            wake_on_release_and_retry,
            boundaries_are_inclusive,
            close_twice_is_ok,
            next_due_reports_earliest_eta_and_lease_expiry,
            enqueue_existing_id_is_conflict,
            retry_logic_works_with_backend,
            retryable_failure_is_pending_with_later_eta,
            task_backoff_overrides_the_workers,
            non_retryable_error_stops_at_once,
            retries_exhaust_into_failed,
            interval_tasks_reschedule_without_drift,
            worker_creates_task_error_on_exceptions,
            both_worker_interfaces_process_tasks,
            get_result_waits_for_completion,
        }
    };
}

#[cfg(test)]
mod tests {
    /// The ids the macro expands to.
    const MACRO_IDS: &[&str] = crate::__conformance_case_list!(__conformance_ids_impl());

    #[test]
    fn macro_ids_match_the_registry() {
        let registry: Vec<&str> = crate::cases().iter().map(|c| c.id).collect();
        assert_eq!(
            MACRO_IDS.to_vec(),
            registry,
            "conformance_tests!'s id list (src/macros.rs) is out of sync with cases()"
        );
    }

    #[test]
    fn case_ids_are_unique_snake_case_and_cite_requirements() {
        let mut seen = std::collections::HashSet::new();
        for c in crate::cases() {
            assert!(seen.insert(c.id), "duplicate case id {}", c.id);
            assert!(
                c.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "case id {} is not snake_case",
                c.id
            );
            assert!(
                !c.requirements.is_empty(),
                "case {} cites no requirement",
                c.id
            );
            assert!(
                !c.checklist.is_empty(),
                "case {} has no checklist text",
                c.id
            );
        }
    }
}
