//! The `bound` span field: extra fields a span carries as one JSON object, written by
//! [`bind_task`](super::bind_task) and read back by the formatters. Always compiled (the
//! runtime's spans use it); the formatters are behind the `logging` feature.

/// The span field that carries arbitrary bound fields (see [`bind_task`](super::bind_task)).
pub(crate) const BOUND_FIELD: &str = "bound";

use std::fmt;

/// Writes `s` as a JSON string literal (quotes and escapes included).
pub(crate) fn write_json_str<W: fmt::Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    // Fast path, the usual case: nothing to escape (a branch-free scan the compiler
    // vectorizes), one write.
    let plain = !s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\') | (b == 0x7f)
    });
    if plain {
        out.write_char('"')?;
        out.write_str(s)?;
        return out.write_char('"');
    }
    out.write_char('"')?;
    let mut start = 0;
    // Every character that needs escaping is ASCII, so scanning bytes is enough (and
    // never splits a multi-byte character: those bytes are all >= 0x80).
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 || b == 0x7f => "",
            _ => continue,
        };
        out.write_str(&s[start..i])?;
        if escape.is_empty() {
            write!(out, "\\u{:04x}", b)?;
        } else {
            out.write_str(escape)?;
        }
        start = i + 1;
    }
    out.write_str(&s[start..])?;
    out.write_char('"')
}

/// Encodes bound fields as the JSON object the `bound` span field carries.
pub(crate) fn encode_bound(pairs: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write_json_str(&mut out, name);
        out.push(':');
        let _ = write_json_str(&mut out, value);
    }
    out.push('}');
    out
}
