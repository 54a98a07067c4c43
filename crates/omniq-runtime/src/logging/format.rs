//! The DEV and PROD line formats, and the layer that writes them ([`OmniqLayer`]).
//!
//! The layer formats each event straight into a reused per-thread buffer: the event's
//! fields are visited into a reused per-thread list, span fields were captured once when
//! the span was created (a [`SpanFields`] extension), the timestamp's date and time are
//! formatted once a second per thread, and the finished line goes to the writer in one
//! `write` call.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{Datelike as _, Timelike as _};
use smallvec::SmallVec;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::fields::{Captured, EventFields, FieldValue, SpanFields, write_json_str};
use super::{CRITICAL_FIELD, LogMode};

/// Fields written first, in this order, when present.
const LEADING_FIELDS: [&str; 4] = ["task_id", "operation", "worker", "correlation_id"];
/// JSON keys the PROD line owns; a field with one of these names is written as `field_<name>`.
const RESERVED_KEYS: [&str; 4] = ["timestamp", "level", "logger", "message"];
/// Room for a span's text values, allocated once (a task span's ids, operation and worker
/// name take about 100 bytes), so capturing them does not grow the string several times.
const SPAN_TEXT_BYTES: usize = 128;
/// A line buffer that grew past this (a huge message) is given back after its line.
const KEEP_LINE_BYTES: usize = 64 * 1024;

/// Captures span fields and writes every event it sees as one DEV or PROD line to `writer`.
/// Filtering is left to the caller (a per-layer or a global filter).
pub(crate) struct OmniqLayer<W> {
    pub(crate) mode: LogMode,
    pub(crate) ansi: bool,
    pub(crate) writer: W,
}

/// Per-thread state reused from event to event.
#[derive(Default)]
struct Scratch {
    event: EventFields,
    line: String,
    clock: Clock,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl<S, W> Layer<S> for OmniqLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Captured::with_text_capacity(SPAN_TEXT_BYTES);
        attrs.record(&mut fields);
        fields.dedupe = true;
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(fields);
        } else {
            let mut fields = Captured::deduping();
            values.record(&mut fields);
            extensions.insert(SpanFields(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // A value whose formatting logs again finds the buffer in use: that nested event
        // gets buffers of its own.
        let _ = SCRATCH.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.write_event(&mut scratch, event, &ctx),
            Err(_) => self.write_event(&mut Scratch::default(), event, &ctx),
        });
    }
}

impl<W> OmniqLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn write_event<S>(&self, scratch: &mut Scratch, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Scratch {
            event: event_fields,
            line,
            clock,
        } = scratch;
        event_fields.clear();
        event.record(event_fields);

        // Hold every span's extensions for the duration of the write so the merged list can
        // borrow from them instead of copying values.
        let spans: SmallVec<[_; 8]> = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().collect())
            .unwrap_or_default();
        let extensions: SmallVec<[_; 8]> = spans.iter().map(|span| span.extensions()).collect();
        let mut merged: Fields<'_> = SmallVec::new();
        for ext in &extensions {
            if let Some(SpanFields(fields)) = ext.get::<SpanFields>() {
                for (name, value) in fields.iter() {
                    merge(&mut merged, name, value);
                }
            }
        }
        for (name, value) in event_fields.fields.iter() {
            merge(&mut merged, name, value);
        }
        arrange(&mut merged);

        let critical = *event.metadata().level() == Level::ERROR
            && event_fields
                .fields
                .iter()
                .any(|(name, value)| name == CRITICAL_FIELD && value.is_true());
        let record = Line {
            event,
            message: &event_fields.message,
            fields: &merged,
            critical,
        };
        line.clear();
        let written = match self.mode {
            LogMode::Dev => record.write_dev(line, self.ansi),
            LogMode::Prod => record.write_json(line, clock),
        };
        if written.is_ok() {
            let _ = self
                .writer
                .make_writer_for(event.metadata())
                .write_all(line.as_bytes());
        }
        if line.capacity() > KEEP_LINE_BYTES {
            *line = String::new();
        }
    }
}

/// An event's fields with those of its spans, in writing order.
type Fields<'a> = SmallVec<[(&'a str, FieldValue<'a>); 16]>;

fn merge<'a>(merged: &mut Fields<'a>, name: &'a str, value: FieldValue<'a>) {
    if let Some(slot) = merged.iter_mut().find(|(n, _)| *n == name) {
        slot.1 = value;
    } else {
        merged.push((name, value));
    }
}

/// Puts the leading fields first, in their order, and the rest after them in the order
/// they appeared; drops the critical marker, because the level label carries it. Done once
/// per event, so the formats write the list as it stands.
fn arrange(merged: &mut Fields<'_>) {
    merged.retain(|(name, _)| *name != CRITICAL_FIELD);
    let mut next = 0;
    for key in LEADING_FIELDS {
        if let Some(i) = merged[next..].iter().position(|(name, _)| *name == key) {
            // Moves the field to `next`, the ones it passes one place on, in order.
            merged[next..=next + i].rotate_right(1);
            next += 1;
        }
    }
}

/// The UTC date and time to the second, formatted once per second per thread.
#[derive(Default)]
struct Clock {
    /// Unix seconds `prefix` was formatted for, plus one (0: nothing formatted yet).
    at: u64,
    /// `2025-12-01T10:30:45`
    prefix: String,
}

impl Clock {
    /// Writes the current time as RFC 3339 UTC with milliseconds.
    fn write_now(&mut self, out: &mut String) -> fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        if self.at != secs.wrapping_add(1) {
            let t = i64::try_from(secs)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            self.prefix.clear();
            write!(
                self.prefix,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )?;
            self.at = secs.wrapping_add(1);
        }
        out.push_str(&self.prefix);
        let millis = now.subsec_millis();
        let digits = [
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ];
        // ASCII digits: always valid UTF-8.
        out.push_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?);
        Ok(())
    }
}

struct Line<'a> {
    event: &'a Event<'a>,
    message: &'a str,
    /// In writing order ([`arrange`]).
    fields: &'a [(&'a str, FieldValue<'a>)],
    critical: bool,
}

impl Line<'_> {
    fn level_label(&self) -> &'static str {
        if self.critical {
            return "CRITICAL";
        }
        match *self.event.metadata().level() {
            Level::TRACE => "TRACE",
            Level::DEBUG => "DEBUG",
            Level::INFO => "INFO",
            Level::WARN => "WARNING",
            Level::ERROR => "ERROR",
        }
    }

    fn level_colour(&self) -> &'static str {
        if self.critical {
            return "\x1b[1;41;97m";
        }
        match *self.event.metadata().level() {
            Level::TRACE => "\x1b[35m",
            Level::DEBUG => "\x1b[34m",
            Level::INFO => "\x1b[1;32m",
            Level::WARN => "\x1b[1;33m",
            Level::ERROR => "\x1b[1;31m",
        }
    }

    /// `2025-12-01 10:30:45 | INFO     | omniq_runtime::worker:123 | Task execution started`
    /// `└── task_id: abc-123 | operation: process_task | worker: worker-1`
    fn write_dev(&self, w: &mut String, ansi: bool) -> fmt::Result {
        const RESET: &str = "\x1b[0m";
        let paint = |w: &mut String, colour: &str, text: fmt::Arguments<'_>| {
            if ansi {
                write!(w, "{colour}{text}{RESET}")
            } else {
                w.write_fmt(text)
            }
        };
        let meta = self.event.metadata();
        let now = chrono::Local::now();
        paint(
            w,
            "\x1b[32m",
            format_args!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                now.year(),
                now.month(),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            ),
        )?;
        w.write_str(" | ")?;
        paint(
            w,
            self.level_colour(),
            format_args!("{:<8}", self.level_label()),
        )?;
        w.write_str(" | ")?;
        match meta.line() {
            Some(line) => paint(w, "\x1b[36m", format_args!("{}:{line}", meta.target()))?,
            None => paint(w, "\x1b[36m", format_args!("{}", meta.target()))?,
        }
        w.write_str(" | ")?;
        write_sanitized(w, self.message)?;
        w.write_char('\n')?;

        if !self.fields.is_empty() {
            if ansi {
                w.write_str("\x1b[2m")?;
            }
            w.write_str("└── ")?;
            for (i, (name, value)) in self.fields.iter().enumerate() {
                if i > 0 {
                    w.write_str(" | ")?;
                }
                write_sanitized(w, name)?;
                w.write_str(": ")?;
                match value {
                    FieldValue::Str(s) => write_sanitized(w, s)?,
                    other => write!(w, "{other}")?,
                }
            }
            if ansi {
                w.write_str(RESET)?;
            }
            w.write_char('\n')?;
        }
        Ok(())
    }

    /// One JSON object per line; see the module docs for the keys.
    fn write_json(&self, w: &mut String, clock: &mut Clock) -> fmt::Result {
        w.push_str("{\"timestamp\":\"");
        clock.write_now(w)?;
        w.push_str("\",\"level\":\"");
        w.push_str(self.level_label());
        w.push_str("\",\"logger\":");
        write_json_str(w, self.event.metadata().target())?;
        w.push_str(",\"message\":");
        write_json_str(w, self.message)?;
        for (name, value) in self.fields {
            w.push(',');
            if RESERVED_KEYS.contains(name) {
                // The reserved names need no escaping.
                w.push_str("\"field_");
                w.push_str(name);
                w.push('"');
            } else {
                write_json_str(w, name)?;
            }
            w.push(':');
            value.write_json(w)?;
        }
        w.push_str("}\n");
        Ok(())
    }
}

/// Writes `s`, escaping control characters other than newline and tab so a logged value
/// cannot inject terminal escape sequences.
fn write_sanitized(w: &mut String, s: &str) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c.is_control() && c != '\n' && c != '\t' {
            w.write_str(&s[start..i])?;
            write!(w, "{}", c.escape_unicode())?;
            start = i + c.len_utf8();
        }
    }
    w.write_str(&s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_fields_come_first_in_their_order_and_the_rest_keep_theirs() {
        let mut fields: Fields<'_> = [
            ("a", FieldValue::U64(1)),
            ("worker", FieldValue::Str("w")),
            ("b", FieldValue::Str("x")),
            ("task_id", FieldValue::Str("t")),
            (CRITICAL_FIELD, FieldValue::Bool(true)),
            ("correlation_id", FieldValue::Str("c")),
            ("z", FieldValue::Bool(false)),
        ]
        .into_iter()
        .collect();
        arrange(&mut fields);
        let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["task_id", "worker", "correlation_id", "a", "b", "z"]
        );
        assert_eq!(fields[1].1, FieldValue::Str("w"));

        let mut none: Fields<'_> = [("b", FieldValue::U64(2)), ("a", FieldValue::U64(1))]
            .into_iter()
            .collect();
        arrange(&mut none);
        let names: Vec<&str> = none.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["b", "a"]);
    }
}
