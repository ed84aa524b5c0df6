//! Timestamps are stored as microseconds since the Unix epoch (UTC) in a
//! BIGINT on both backends.

pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

pub const MICROS_PER_SEC: i64 = 1_000_000;
