//! Cron schedules: a periodic task registered at startup (idempotent across restarts and
//! processes), and a calendar schedule in a time zone.
//!
//! `cargo run --example cron` (embedded default storage in a temporary directory).

use omniq::{AsyncOmniQ, HandlerError, Settings};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        base_dir: dir.path().into(),
        ..Settings::from_env()?
    };
    let omniq = AsyncOmniQ::new(settings).await?;

    let mut worker = omniq.worker(2)?;
    let beats = Arc::new(AtomicU32::new(0));
    let b = Arc::clone(&beats);
    worker.register("heartbeat.log", move |(): ()| {
        let b = Arc::clone(&b);
        async move {
            let n = b.fetch_add(1, Ordering::SeqCst) + 1;
            println!(
                "heartbeat.log  run {n} at {}",
                time::OffsetDateTime::now_utc()
            );
            Ok::<_, HandlerError>(())
        }
    });
    // Every two seconds (six fields: seconds first). Registering it again — another
    // process, the next deploy — finds the live series instead of adding one.
    worker.periodic("heartbeat.log", "*/2 * * * * *", "UTC")?;
    worker.register("reports.daily", |(): ()| async move {
        Ok::<_, HandlerError>(())
    });
    worker.start()?;

    // Weekdays at 09:00 Berlin time, whatever the season.
    let report = omniq
        .enqueue("reports.daily", &())
        .cron("0 9 * * 1-5", "Europe/Berlin")
        .unique_key("reports.daily")
        .await?;
    let next = omniq.get_task(&report).await?.and_then(|t| t.schedule.eta);
    println!("reports.daily  next run {next:?} (09:00 Europe/Berlin, Monday to Friday)");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while beats.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop(Duration::from_secs(5)).await?;
    println!(
        "heartbeat.log  ran {} times on its slots; one series",
        beats.load(Ordering::SeqCst)
    );
    omniq.close().await?;
    Ok(())
}
