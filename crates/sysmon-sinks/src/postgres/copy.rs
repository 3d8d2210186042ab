//! PostgreSQL's binary COPY format, written straight into one buffer: the
//! fastest way to hand PostgreSQL a batch (no per-value round trips, no text
//! parsing on the server).
//!
//! Layout: a header, then per row a 16-bit field count and per field a 32-bit
//! length (-1 for NULL) and the value in its binary send format, then -1.

use bytes::{BufMut, Bytes, BytesMut};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// A binary COPY payload being built.
pub(crate) struct CopyBuf {
    buf: BytesMut,
}

impl CopyBuf {
    /// An empty payload (header written) with room for about `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> CopyBuf {
        let mut buf = BytesMut::with_capacity(capacity + 32);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0); // flags
        buf.put_i32(0); // header extension length
        CopyBuf { buf }
    }

    /// Starts a row of `fields` fields.
    pub(crate) fn row(&mut self, fields: i16) {
        self.buf.put_i16(fields);
    }

    /// A NULL field.
    pub(crate) fn null(&mut self) {
        self.buf.put_i32(-1);
    }

    /// An `integer` field.
    pub(crate) fn int4(&mut self, v: i32) {
        self.buf.put_i32(4);
        self.buf.put_i32(v);
    }

    /// A `bigint` field.
    pub(crate) fn int8(&mut self, v: i64) {
        self.buf.put_i32(8);
        self.buf.put_i64(v);
    }

    /// A `double precision` field.
    pub(crate) fn float8(&mut self, v: f64) {
        self.buf.put_i32(8);
        self.buf.put_f64(v);
    }

    /// A `timestamptz` field from milliseconds since the Unix epoch.
    pub(crate) fn timestamptz_ms(&mut self, ms: i64) {
        self.buf.put_i32(8);
        self.buf
            .put_i64(ms.saturating_mul(1000).saturating_sub(PG_EPOCH_OFFSET_US));
    }

    /// A `text` or `bytea` field (`text` must be UTF-8, which `&str` is).
    pub(crate) fn bytes(&mut self, v: &[u8]) -> Result<(), String> {
        let len = i32::try_from(v.len()).map_err(|_| format!("a field of {} bytes", v.len()))?;
        self.buf.put_i32(len);
        self.buf.put_slice(v);
        Ok(())
    }

    /// An optional field.
    pub(crate) fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut CopyBuf, T)) {
        match v {
            Some(v) => f(self, v),
            None => self.null(),
        }
    }

    /// An optional `text` or `bytea` field; empty is NULL.
    pub(crate) fn bytes_or_null(&mut self, v: &[u8]) -> Result<(), String> {
        if v.is_empty() {
            self.null();
            Ok(())
        } else {
            self.bytes(v)
        }
    }

    /// The finished payload (trailer written).
    pub(crate) fn finish(mut self) -> Bytes {
        self.buf.put_i16(-1);
        self.buf.freeze()
    }
}
