//! The DEV and PROD line formats, as one `FormatEvent`.

use std::fmt;

use chrono::{Datelike as _, Timelike as _};
use smallvec::SmallVec;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::fields::{EventFields, FieldValue, SpanFields, write_json_str};
use super::{CRITICAL_FIELD, LogMode};

/// Fields written first, in this order, when present.
const LEADING_FIELDS: [&str; 4] = ["task_id", "operation", "worker", "correlation_id"];
/// JSON keys the PROD line owns; a field with one of these names is written as `field_<name>`.
const RESERVED_KEYS: [&str; 4] = ["timestamp", "level", "logger", "message"];

/// Formats events as DEV console lines or PROD JSON lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OmniqFormat {
    pub(crate) mode: LogMode,
}

impl<S, N> FormatEvent<S, N> for OmniqFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let event_fields = EventFields::of(event);

        // Hold every span's extensions for the duration of the write so the merged list can
        // borrow from them instead of cloning values.
        // (Inline vectors: no allocation per event for the usual few spans and fields.)
        let spans: SmallVec<[_; 8]> = ctx
            .event_scope()
            .map(|scope| scope.from_root().collect())
            .unwrap_or_default();
        let extensions: SmallVec<[_; 8]> = spans.iter().map(|span| span.extensions()).collect();
        let mut merged: Fields<'_> = SmallVec::new();
        let span_lists = extensions
            .iter()
            .filter_map(|ext| ext.get::<SpanFields>())
            .map(|SpanFields(list)| list);
        for list in span_lists.chain(std::iter::once(&event_fields.fields)) {
            for (name, value) in &list.fields {
                merge(&mut merged, name, value);
            }
        }

        let critical = *event.metadata().level() == Level::ERROR
            && event_fields
                .fields
                .fields
                .iter()
                .any(|(name, value)| name == CRITICAL_FIELD && value.is_true());
        let ordered = order(&merged);
        let line = Line {
            event,
            message: &event_fields.message,
            fields: &ordered,
            critical,
        };
        match self.mode {
            LogMode::Dev => line.write_dev(&mut writer),
            LogMode::Prod => line.write_json(&mut writer),
        }
    }
}

/// An event's fields with those of its spans, in writing order.
type Fields<'a> = SmallVec<[(&'a str, &'a FieldValue); 16]>;

fn merge<'a>(merged: &mut Fields<'a>, name: &'a str, value: &'a FieldValue) {
    if let Some(slot) = merged.iter_mut().find(|(n, _)| *n == name) {
        slot.1 = value;
    } else {
        merged.push((name, value));
    }
}

/// Leading fields first, then the rest in the order they appeared; the critical marker is
/// dropped because the level label carries it.
fn order<'a>(merged: &[(&'a str, &'a FieldValue)]) -> Fields<'a> {
    let mut ordered = Fields::new();
    for key in LEADING_FIELDS {
        if let Some(field) = merged.iter().find(|(name, _)| *name == key) {
            ordered.push(*field);
        }
    }
    ordered.extend(
        merged
            .iter()
            .filter(|(name, _)| !LEADING_FIELDS.contains(name) && *name != CRITICAL_FIELD)
            .copied(),
    );
    ordered
}

struct Line<'a> {
    event: &'a Event<'a>,
    message: &'a str,
    fields: &'a [(&'a str, &'a FieldValue)],
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
    fn write_dev(&self, w: &mut Writer<'_>) -> fmt::Result {
        const RESET: &str = "\x1b[0m";
        let ansi = w.has_ansi_escapes();
        let paint = |w: &mut Writer<'_>, colour: &str, text: fmt::Arguments<'_>| {
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
    fn write_json(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = time::OffsetDateTime::now_utc();
        write!(
            w,
            "{{\"timestamp\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"logger\":",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond(),
            self.level_label(),
        )?;
        write_json_str(w, self.event.metadata().target())?;
        w.write_str(",\"message\":")?;
        write_json_str(w, self.message)?;
        for (name, value) in self.fields {
            w.write_char(',')?;
            if RESERVED_KEYS.contains(name) {
                write_json_str(w, &format!("field_{name}"))?;
            } else {
                write_json_str(w, name)?;
            }
            w.write_char(':')?;
            value.write_json(w)?;
        }
        w.write_str("}\n")
    }
}

/// Writes `s`, escaping control characters other than newline and tab so a logged value
/// cannot inject terminal escape sequences.
fn write_sanitized(w: &mut Writer<'_>, s: &str) -> fmt::Result {
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
