//! The `bound` span field: extra fields a span carries as one JSON object, written by
//! [`bind_task`](super::bind_task) and read back by the formatters. Always compiled (the
//! runtime's spans use it); the formatters are behind the `logging` feature.

/// The span field that carries arbitrary bound fields (see [`bind_task`](super::bind_task)).
pub(crate) const BOUND_FIELD: &str = "bound";

use std::fmt;

/// Writes `s` as a JSON string literal (quotes and escapes included).
pub(crate) fn write_json_str<W: fmt::Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    // Fast path, the usual case: nothing to escape, one write.
    if !needs_escape(s.as_bytes()) {
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

/// The bytes JSON needs escaped, and DEL (escaped anyway).
static SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[0x7f] = true;
    table
};

/// Whether `bytes` hold a byte JSON needs escaped: eight bytes per step as one `u64`
/// (a word-wise test, no vector registers, no padding), the last few by table look-up.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `x` is zero (the classic "has zero byte" test:
    // exact as a yes/no answer, which is all that is asked here).
    #[inline]
    fn zero_byte(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A byte below 0x20: `x - 0x20…` borrows into its high bit while the byte's own
        // high bit is clear (exact for bounds up to 0x80).
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let special = zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')))
            | zero_byte(x ^ (ONES * 0x7f));
        if control | special != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| SPECIAL[usize::from(b)])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_byte_is_found_in_a_block_and_in_the_remainder() {
        let plain = "abcdefghijklmnopqrstuvwxyz0123456789-é🚀";
        assert!(!needs_escape(plain.as_bytes()));
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{7f}'] {
            for at in [0, 5, 15, 16, 17, 31, 32, 40] {
                let mut s: String = plain.chars().take(at).collect();
                s.push(special);
                s.push_str("tail");
                assert!(needs_escape(s.as_bytes()), "{special:?} at {at}");
            }
        }
    }

    /// The word-wise test answers as the table does for every byte value and every pair
    /// of neighbouring values, wherever they stand in a word or in the remainder.
    #[test]
    fn the_word_wise_scan_agrees_with_the_table() {
        let table = |bytes: &[u8]| bytes.iter().any(|&b| SPECIAL[usize::from(b)]);
        for b in 0..=255u8 {
            for at in 0..21 {
                let mut bytes = [b'a'; 21];
                bytes[at] = b;
                assert_eq!(needs_escape(&bytes), table(&bytes), "byte {b:#04x} at {at}");
            }
        }
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for at in [0, 3, 6, 7, 14, 16] {
                    let mut bytes = [0xc3u8; 18];
                    bytes[at] = a;
                    bytes[at + 1] = b;
                    assert_eq!(
                        needs_escape(&bytes),
                        table(&bytes),
                        "{a:#04x} {b:#04x} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn escaped_strings_read_back_as_json() {
        let odd = "q\" b\\ n\n r\r t\t nul\u{0} us\u{1f} del\u{7f} é 🚀 0123456789abcdef";
        let mut out = String::new();
        write_json_str(&mut out, odd).unwrap();
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), odd);
        assert!(!out.contains('\u{7f}') && !out.contains('\n'), "{out:?}");
    }
}
