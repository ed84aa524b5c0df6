//! The JSON values of an audit event's canonical form, written byte for byte
//! as `serde_json` writes them, without its per-value serializer set-up:
//! verification hashes millions of events, and most of their strings need no
//! escaping at all. Anything that does is handed to `serde_json` itself, so
//! the escaping rules stay serde_json's (a unit test compares both).

/// A JSON string. Only `"`, `\` and control characters below U+0020 are
/// escaped by serde_json; any other string is copied between quotes. `s` is
/// a stored text's bytes: bytes that are not UTF-8 are written as they are,
/// or after a 0xFF byte where escaping would be needed, so they can never
/// reproduce what serde_json writes for a real string.
pub fn string(buf: &mut Vec<u8>, s: &[u8]) {
    // Without an early exit, so that the compiler checks 16 or 32 bytes at a time.
    let needs_escape = s.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s);
        buf.push(b'"');
    } else if let Ok(text) = std::str::from_utf8(s) {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, text);
    } else {
        buf.push(0xff);
        buf.extend_from_slice(s);
    }
}

/// A JSON string or `null`.
pub fn opt_string(buf: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// A JSON integer or `null`.
pub fn int(buf: &mut Vec<u8>, i: Option<i64>) {
    match i {
        Some(i) => buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        None => buf.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_serde_json_writes() {
        let mut samples: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        samples.extend(
            [
                "",
                "plain",
                "\"quoted\"",
                "back\\slash",
                "tab\tnew\nline\r",
                "\u{7f}\u{80}\u{2028}\u{2029}",
                "見積書_2026年度.pdf",
                "emoji 📄 </script>",
                "\u{0}\u{1}\u{1f}",
            ]
            .map(String::from),
        );
        for s in &samples {
            let mut ours = Vec::new();
            string(&mut ours, s.as_bytes());
            assert_eq!(ours, serde_json::to_vec(s).expect("json"), "{s:?}");
            let mut ours = Vec::new();
            opt_string(&mut ours, Some(s.as_bytes()));
            assert_eq!(ours, serde_json::to_vec(&Some(s)).expect("json"));
        }
        // Stored bytes that are not UTF-8 never give serde_json's output.
        for bad in [&b"\xff\"q"[..], &b"\xc3"[..]] {
            let mut ours = Vec::new();
            string(&mut ours, bad);
            assert!(std::str::from_utf8(&ours).is_err(), "{ours:?}");
        }
        let mut none = Vec::new();
        opt_string(&mut none, None);
        int(&mut none, None);
        assert_eq!(none, b"nullnull");
        for i in [0, 1, -1, 42, i64::MIN, i64::MAX, 1_764_115_200_000_000] {
            let mut ours = Vec::new();
            int(&mut ours, Some(i));
            assert_eq!(ours, serde_json::to_vec(&i).expect("json"));
        }
    }
}
