//! Structured field capture for spans and events.
//!
//! tracing hands field values to visitors one at a time; the formatters need them as data
//! (to write JSON numbers as numbers, to merge the fields of every enclosing span). A span's
//! fields are visited once, when the span is created or recorded, and kept as a
//! [`SpanFields`] extension in the registry; an event's fields are visited into a reused
//! per-thread [`Captured`]. Text values of one span or event share one string (`text`),
//! so capturing costs no allocation per field.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use smallvec::SmallVec;
use tracing::field::{Field, Visit};

pub(crate) use super::bound::{BOUND_FIELD, write_json_str};

/// One captured value; text lives in the owner's `text` at this range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Slot {
    Str(Range<usize>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// A captured value, borrowed for writing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldValue<'a> {
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue<'_> {
    pub(crate) fn write_json<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        match *self {
            FieldValue::Str(s) => write_json_str(out, s),
            FieldValue::I64(v) => write!(out, "{v}"),
            FieldValue::U64(v) => write!(out, "{v}"),
            FieldValue::F64(v) if v.is_finite() => write!(out, "{v:?}"),
            FieldValue::F64(v) => write_json_str(out, &v.to_string()),
            FieldValue::Bool(v) => out.write_str(if v { "true" } else { "false" }),
        }
    }

    pub(crate) fn is_true(&self) -> bool {
        matches!(self, FieldValue::Bool(true) | FieldValue::Str("true"))
    }
}

impl fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Str(s) => f.write_str(s),
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::U64(v) => write!(f, "{v}"),
            FieldValue::F64(v) => write!(f, "{v}"),
            FieldValue::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// Fields in the order they were recorded. Inline up to eight fields (a task span has
/// five): no allocation for the list itself, and one string for all text values.
///
/// The names of one callsite's fields are distinct, so a first capture just appends (a
/// repeated name, as from a `bound` object, is resolved by the formatter, where the later
/// value wins in the earlier place). Once [`dedupe`](Self::dedupe) is set, as for a span
/// after its creation, a value recorded later replaces the earlier one in place, so a span
/// recorded again and again does not grow.
#[derive(Debug, Default, Clone)]
pub(crate) struct Captured {
    text: String,
    fields: SmallVec<[(Cow<'static, str>, Slot); 8]>,
    pub(crate) dedupe: bool,
}

impl Captured {
    pub(crate) fn with_text_capacity(bytes: usize) -> Self {
        Captured {
            text: String::with_capacity(bytes),
            fields: SmallVec::new(),
            dedupe: false,
        }
    }

    /// An empty list where a value recorded again replaces the earlier one.
    pub(crate) fn deduping() -> Self {
        Captured {
            dedupe: true,
            ..Captured::default()
        }
    }

    /// Forgets every field, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.fields.clear();
    }

    /// The fields, in order, borrowed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, FieldValue<'_>)> + '_ {
        self.fields.iter().map(|(name, slot)| {
            let value = match slot {
                Slot::Str(range) => FieldValue::Str(&self.text[range.clone()]),
                Slot::I64(v) => FieldValue::I64(*v),
                Slot::U64(v) => FieldValue::U64(*v),
                Slot::F64(v) => FieldValue::F64(*v),
                Slot::Bool(v) => FieldValue::Bool(*v),
            };
            (name.as_ref(), value)
        })
    }

    fn set(&mut self, name: Cow<'static, str>, value: Slot) {
        if !self.dedupe {
            self.fields.push((name, value));
        } else if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
            // A replaced text value stays in `text` unused: spans record a field or two
            // after creation at most.
            slot.1 = value;
        } else {
            self.fields.push((name, value));
        }
    }

    fn set_field(&mut self, field: &Field, value: Slot) {
        self.set(Cow::Borrowed(field.name()), value);
    }

    /// Appends text produced by `write` and returns its range.
    fn push_text(&mut self, write: impl FnOnce(&mut String) -> fmt::Result) -> Range<usize> {
        let start = self.text.len();
        if write(&mut self.text).is_err() {
            self.text.truncate(start);
        }
        start..self.text.len()
    }

    fn set_str(&mut self, name: Cow<'static, str>, value: &str) {
        let range = self.push_text(|t| t.write_str(value));
        self.set(name, Slot::Str(range));
    }

    /// Expands the JSON object in a `bound` field into separate fields; a value that is not
    /// such an object is kept as a plain `bound` field.
    fn set_bound(&mut self, raw: &str) {
        match serde_json::from_str::<OrderedPairs>(raw) {
            Ok(OrderedPairs(pairs)) => {
                for (name, value) in pairs {
                    self.set_str(Cow::Owned(name), &value);
                }
            }
            Err(_) => self.set_str(Cow::Borrowed(BOUND_FIELD), raw),
        }
    }
}

impl Visit for Captured {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let range = self.push_text(|t| write!(t, "{value:?}"));
        if field.name() == BOUND_FIELD {
            let raw = self.text[range.clone()].to_owned();
            self.text.truncate(range.start);
            self.set_bound(&raw);
        } else {
            self.set_field(field, Slot::Str(range));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == BOUND_FIELD {
            self.set_bound(value);
        } else {
            self.set_str(Cow::Borrowed(field.name()), value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set_field(field, Slot::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set_field(field, Slot::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set_field(field, Slot::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set_field(field, Slot::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let range = self.push_text(|t| write!(t, "{value}"));
        self.set_field(field, Slot::Str(range));
    }
}

/// A JSON object read as `(key, value)` pairs in document order, values as strings.
struct OrderedPairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedPairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = OrderedPairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedPairs, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(OrderedPairs(pairs))
            }
        }
        deserializer.deserialize_map(PairsVisitor)
    }
}

/// The captured fields of one span, stored in the span's registry extensions.
#[derive(Debug, Default)]
pub(crate) struct SpanFields(pub(crate) Captured);

/// An event's message and other fields, reused from event to event on a thread.
#[derive(Debug, Default)]
pub(crate) struct EventFields {
    pub(crate) message: String,
    pub(crate) fields: Captured,
}

impl EventFields {
    pub(crate) fn clear(&mut self) {
        self.message.clear();
        self.fields.clear();
    }
}

impl Visit for EventFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.record_debug(field, value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.record_str(field, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.record_i64(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.record_u64(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.record_f64(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.record_bool(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.fields.record_error(field, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_value_reads_back_as_the_new_one_in_the_old_place() {
        let mut c = Captured {
            dedupe: true,
            ..Captured::default()
        };
        c.set_str(Cow::Borrowed("a"), "one");
        c.set(Cow::Borrowed("n"), Slot::U64(7));
        c.set_str(Cow::Borrowed("a"), "two");
        let got: Vec<_> = c.iter().collect();
        assert_eq!(
            got,
            vec![("a", FieldValue::Str("two")), ("n", FieldValue::U64(7))]
        );
        c.clear();
        assert_eq!(c.iter().count(), 0);
    }

    #[test]
    fn bound_json_is_unpacked_and_other_text_kept_whole() {
        let mut c = Captured::default();
        c.set_bound(r#"{"user_id":"u-1","note":"a \"q\""}"#);
        c.set_bound("not json");
        let got: Vec<_> = c.iter().collect();
        assert_eq!(
            got,
            vec![
                ("user_id", FieldValue::Str("u-1")),
                ("note", FieldValue::Str("a \"q\"")),
                ("bound", FieldValue::Str("not json")),
            ]
        );
    }
}
