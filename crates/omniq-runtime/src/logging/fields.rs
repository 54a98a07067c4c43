//! Structured field capture for spans and events.
//!
//! tracing hands field values to visitors one at a time; the formatters need them as data
//! (to write JSON numbers as numbers, to merge the fields of every enclosing span). The
//! [`SpanFieldsLayer`] visits a span's fields once, when the span is created or recorded,
//! and stores them as a [`SpanFields`] extension in the registry; formatters read that
//! extension for each span in an event's scope.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use smallvec::SmallVec;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

pub(crate) use super::bound::{BOUND_FIELD, write_json_str};

/// One captured field value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl FieldValue {
    pub(crate) fn write_json<W: fmt::Write + ?Sized>(&self, out: &mut W) -> fmt::Result {
        match self {
            FieldValue::Str(s) => write_json_str(out, s),
            FieldValue::I64(v) => write!(out, "{v}"),
            FieldValue::U64(v) => write!(out, "{v}"),
            FieldValue::F64(v) if v.is_finite() => write!(out, "{v:?}"),
            FieldValue::F64(v) => write_json_str(out, &v.to_string()),
            FieldValue::Bool(v) => out.write_str(if *v { "true" } else { "false" }),
        }
    }

    pub(crate) fn is_true(&self) -> bool {
        matches!(self, FieldValue::Bool(true)) || matches!(self, FieldValue::Str(s) if s == "true")
    }
}

impl fmt::Display for FieldValue {
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

/// Fields in the order they were recorded; a later value for the same name replaces the
/// earlier one in place. Inline up to six fields (a task span has five): no allocation
/// for the list itself.
#[derive(Debug, Default, Clone)]
pub(crate) struct FieldList {
    pub(crate) fields: SmallVec<[(Cow<'static, str>, FieldValue); 6]>,
}

impl FieldList {
    fn set(&mut self, name: Cow<'static, str>, value: FieldValue) {
        if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.fields.push((name, value));
        }
    }

    fn set_field(&mut self, field: &Field, value: FieldValue) {
        self.set(Cow::Borrowed(field.name()), value);
    }

    /// Expands the JSON object in a `bound` field into separate fields; a value that is not
    /// such an object is kept as a plain `bound` field.
    fn set_bound(&mut self, raw: &str) {
        match serde_json::from_str::<OrderedPairs>(raw) {
            Ok(OrderedPairs(pairs)) => {
                for (name, value) in pairs {
                    self.set(Cow::Owned(name), FieldValue::Str(value));
                }
            }
            Err(_) => self.set(Cow::Borrowed(BOUND_FIELD), FieldValue::Str(raw.to_owned())),
        }
    }
}

impl Visit for FieldList {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == BOUND_FIELD {
            self.set_bound(&text);
        } else {
            self.set_field(field, FieldValue::Str(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == BOUND_FIELD {
            self.set_bound(value);
        } else {
            self.set_field(field, FieldValue::Str(value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set_field(field, FieldValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set_field(field, FieldValue::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set_field(field, FieldValue::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set_field(field, FieldValue::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set_field(field, FieldValue::Str(value.to_string()));
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
pub(crate) struct SpanFields(pub(crate) FieldList);

/// Captures span fields into [`SpanFields`] extensions for the formatters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpanFieldsLayer;

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = FieldList::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            values.record(fields);
        } else {
            let mut fields = FieldList::default();
            values.record(&mut fields);
            extensions.insert(SpanFields(fields));
        }
    }
}

/// An event's message and other fields.
#[derive(Debug, Default)]
pub(crate) struct EventFields {
    pub(crate) message: String,
    pub(crate) fields: FieldList,
}

impl EventFields {
    pub(crate) fn of(event: &Event<'_>) -> Self {
        let mut fields = EventFields {
            // Most messages fit: one allocation instead of a string grown several times.
            message: String::with_capacity(128),
            fields: FieldList::default(),
        };
        event.record(&mut fields);
        fields
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
