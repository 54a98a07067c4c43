//! Microbenchmarks of the hot-path codec work: a task record encoded and decoded with each
//! serializer, and a `TaskError` created and encoded (`cargo bench -p omniq-core`).

// `criterion_main!` defines an undocumented `pub fn main`.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use omniq_core::{ErrorType, Format, Payload, Task, TaskError};
use std::hint::black_box;

/// A typical task: a handler name, a small argument map, a retried error.
fn sample_task(format: Format) -> Task {
    #[derive(serde::Serialize)]
    struct Args<'a> {
        to: &'a str,
        subject: &'a str,
        attempt: u32,
    }
    let args = format
        .encode(&Args {
            to: "ada@example.com",
            subject: "Welcome aboard",
            attempt: 1,
        })
        .unwrap_or_default();
    let mut task = Task::new("emails.send", Payload(args));
    task.attempts = 1;
    task.error = Some(
        TaskError::new(ErrorType::Network, "connection reset by peer")
            .with_context("host", "smtp.example.com"),
    );
    task
}

fn codec(c: &mut Criterion) {
    for format in [Format::MessagePack, Format::Json] {
        let task = sample_task(format);
        let bytes = format.encode(&task).unwrap_or_default();
        c.bench_function(&format!("task_encode/{}", format.name()), |b| {
            b.iter(|| format.encode(black_box(&task)))
        });
        c.bench_function(&format!("task_decode/{}", format.name()), |b| {
            b.iter(|| format.decode::<Task>(black_box(&bytes)))
        });
    }
}

fn task_error(c: &mut Criterion) {
    c.bench_function("task_error_new", |b| {
        b.iter(|| TaskError::new(black_box(ErrorType::Runtime), black_box("boom")))
    });
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    c.bench_function("task_error_from_error", |b| {
        b.iter(|| TaskError::from_error(black_box(&io)))
    });
    let err = TaskError::new(ErrorType::Runtime, "boom").with_context("attempt", 2);
    for format in [Format::MessagePack, Format::Json] {
        c.bench_function(&format!("task_error_encode/{}", format.name()), |b| {
            b.iter(|| format.encode(black_box(&err)))
        });
    }
}

criterion_group!(benches, codec, task_error);
criterion_main!(benches);
