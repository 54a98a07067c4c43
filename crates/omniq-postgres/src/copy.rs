//! Binary `COPY` rows for a large batch without unique keys.
//!
//! A batch that cannot meet the unique-key arbiter needs no `ON CONFLICT`, and `COPY`
//! stores it with less server work than `INSERT … SELECT FROM unnest(…)`: no arrays to
//! build and take apart, and the heap takes the rows a page at a time. The rows are
//! encoded in PostgreSQL's binary `COPY` format (the same wire values the array
//! parameters carry).

use crate::convert::PgTime;
use crate::error::{Error, Result};
use sqlx::error::BoxDynError;
use uuid::Uuid;

/// The binary `COPY` signature, flags and header-extension length.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a field count of -1.
const TRAILER: &[u8] = &(-1_i16).to_be_bytes();
/// Fields per row: the twenty columns of `Sql::copy_in`.
const FIELDS: i16 = 20;

/// A buffer of binary `COPY` data.
pub(crate) struct CopyBuf {
    pub(crate) buf: Vec<u8>,
}

fn encode_err(e: BoxDynError) -> Error {
    Error::Sqlx(sqlx::Error::Encode(e))
}

impl CopyBuf {
    /// An empty buffer that starts with the format's header.
    pub(crate) fn with_header(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER.len()));
        buf.extend_from_slice(HEADER);
        Self { buf }
    }

    /// Ends the data.
    pub(crate) fn trailer(&mut self) {
        self.buf.extend_from_slice(TRAILER);
    }

    /// Starts a row.
    pub(crate) fn row(&mut self) {
        self.buf.extend_from_slice(&FIELDS.to_be_bytes());
    }

    fn len_prefix(&mut self, len: usize) -> Result<()> {
        let len = i32::try_from(len)
            .map_err(|_| encode_err(format!("a value of {len} bytes is too large").into()))?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        Ok(())
    }

    pub(crate) fn null(&mut self) {
        self.buf.extend_from_slice(&(-1_i32).to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> Result<()> {
        self.len_prefix(v.len())?;
        self.buf.extend_from_slice(v);
        Ok(())
    }

    pub(crate) fn text(&mut self, v: &str) -> Result<()> {
        self.bytes(v.as_bytes())
    }

    pub(crate) fn opt_text(&mut self, v: Option<&str>) -> Result<()> {
        match v {
            Some(v) => self.text(v),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    pub(crate) fn opt_bytes(&mut self, v: Option<&[u8]>) -> Result<()> {
        match v {
            Some(v) => self.bytes(v),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    pub(crate) fn uuid(&mut self, v: &Uuid) {
        self.buf.extend_from_slice(&16_i32.to_be_bytes());
        self.buf.extend_from_slice(v.as_bytes());
    }

    pub(crate) fn int4(&mut self, v: i32) {
        self.buf.extend_from_slice(&4_i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn int8(&mut self, v: i64) {
        self.buf.extend_from_slice(&8_i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn opt_int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    pub(crate) fn time(&mut self, v: PgTime) -> Result<()> {
        self.int8(v.to_pg().map_err(encode_err)?);
        Ok(())
    }

    pub(crate) fn opt_time(&mut self, v: Option<PgTime>) -> Result<()> {
        match v {
            Some(v) => self.time(v),
            None => {
                self.null();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed_big_endian() {
        let mut b = CopyBuf::with_header(0);
        assert_eq!(
            b.buf.len(),
            19,
            "signature (11), flags (4), extension length (4)"
        );
        b.buf.clear();
        b.row();
        b.int4(-2);
        b.null();
        b.text("ab").expect("text");
        b.uuid(&Uuid::from_u128(1));
        assert_eq!(
            b.buf,
            [
                &[0, 20][..],
                &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe],
                &[0xff, 0xff, 0xff, 0xff],
                &[0, 0, 0, 2, b'a', b'b'],
                &[0, 0, 0, 16],
                &[0; 15],
                &[1],
            ]
            .concat()
        );
        b.buf.clear();
        // PostgreSQL's epoch is 2000-01-01: the Unix epoch is 946 684 800 s before it.
        b.time(PgTime(0)).expect("time");
        assert_eq!(b.buf[4..], (-946_684_800_000_000_i64).to_be_bytes());
        assert!(b.time(PgTime(i64::MIN)).is_err());
    }
}
