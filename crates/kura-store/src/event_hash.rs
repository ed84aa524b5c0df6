//! What an audit event's chain hash covers, byte for byte.
//!
//! Two forms exist. Events written since migration 11 use the **binary
//! form**: the previous hash as 32 raw bytes, the position, then every stored
//! field tagged and length-prefixed. Hashing it costs about a third less than
//! the JSON form (fewer bytes, no escaping), which is what lets `kura audit
//! verify` check a million events per second per core. Events written before
//! keep the **JSON form** they were hashed with: the compact JSON array of
//! the chain name, the position and every field, after the previous hash as
//! hex text. Which events use which is one id (`binary_after_id`): the newest
//! event id when the database was migrated, 0 for a new database.
//!
//! Both forms are specified in docs/security.md, so that an organization can
//! check an export with its own tools.

use crate::canonical_json as json;
use kura_crypto::{Digest, Sha256};

/// The chain of events that have no organization.
pub const PLATFORM_CHAIN: &str = "platform";

/// A stored event with borrowed fields: what verification reads straight
/// from the database's buffers without copying. Text fields are the stored
/// bytes; they are hashed as they are, so a stored value that is not valid
/// UTF-8 cannot match the hash of the text that was written.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub id: i64,
    pub ts: i64,
    pub org_id: Option<&'a [u8]>,
    pub actor_user_id: Option<&'a [u8]>,
    pub actor_org_id: Option<&'a [u8]>,
    pub credential: Option<&'a [u8]>,
    pub ip: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    pub action: &'a [u8],
    pub outcome: &'a [u8],
    pub project_id: Option<&'a [u8]>,
    pub node_id: Option<&'a [u8]>,
    pub version_id: Option<&'a [u8]>,
    pub object_name: Option<&'a [u8]>,
    pub bytes: Option<i64>,
    pub detail: Option<&'a [u8]>,
    pub chain_seq: Option<i64>,
    pub chain_hash: Option<&'a [u8]>,
}

/// Which form covers which events: the binary form every event whose id is
/// above `binary_after_id`, the JSON form the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashForms {
    pub binary_after_id: i64,
}

impl HashForms {
    /// A trail where every event uses the JSON form (exports made before the
    /// binary form existed).
    pub const ALL_JSON: Self = Self {
        binary_after_id: i64::MAX,
    };

    pub fn is_binary(&self, id: i64) -> bool {
        id > self.binary_after_id
    }
}

/// Binary form tags: an absent value, an integer, a text.
const NULL: u8 = 0;
const INT: u8 = 1;
const TEXT: u8 = 2;

/// Texts of this length (ids: UUIDs in hyphenated form) are copied with a
/// fixed-size move instead of a call to `memcpy`.
const UUID_LEN: usize = 36;

/// Where the binary form is written: a slice known to be long enough,
/// filled front to back. Copying into a sized slice instead of pushing onto
/// a `Vec` (capacity checks, a `memcpy` call per field) took a sixth off
/// verification's own work (bench/RESULTS.md, run 12).
struct Writer<'b> {
    out: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) {
        self.out[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    #[inline(always)]
    fn int(&mut self, v: Option<i64>) {
        match v {
            None => self.bytes(&[NULL]),
            Some(v) => {
                let mut tagged = [INT; 9];
                tagged[1..].copy_from_slice(&v.to_be_bytes());
                self.bytes(&tagged);
            }
        }
    }

    #[inline(always)]
    fn text(&mut self, v: Option<&[u8]>) {
        let Some(s) = v else {
            return self.bytes(&[NULL]);
        };
        if let Ok(id) = <&[u8; UUID_LEN]>::try_from(s) {
            self.bytes(&[TEXT, UUID_LEN as u8]);
            return self.bytes(id);
        }
        self.bytes(&[TEXT]);
        // Unsigned LEB128 length, then the bytes.
        let mut n = s.len() as u64;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.bytes(&[low]);
                break;
            }
            self.bytes(&[low | 0x80]);
        }
        self.bytes(s);
    }
}

/// The most a text field takes in the binary form besides its bytes: the
/// tag and a LEB128 length of up to ten bytes.
const TEXT_OVERHEAD: usize = 11;

impl RecordView<'_> {
    pub fn chain(&self) -> &[u8] {
        self.org_id.unwrap_or(PLATFORM_CHAIN.as_bytes())
    }

    /// The fields after the position, in the order both forms list them.
    fn texts_before_bytes(&self) -> [Option<&[u8]>; 13] {
        [
            self.org_id,
            self.actor_user_id,
            self.actor_org_id,
            self.credential,
            self.ip,
            self.user_agent,
            self.request_id,
            Some(self.action),
            Some(self.outcome),
            self.project_id,
            self.node_id,
            self.version_id,
            self.object_name,
        ]
    }

    /// The binary form's hash: SHA-256 over `prev` (32 raw bytes), the
    /// position as a big-endian i64, then `ts`, the thirteen text fields,
    /// `bytes` and `detail`, each as a tag (0 absent, 1 integer followed by
    /// 8 big-endian bytes, 2 text followed by its LEB128 byte length and its
    /// UTF-8 bytes). `buf` is reused across events.
    pub fn binary_hash(&self, prev: &[u8; 32], seq: i64, buf: &mut Vec<u8>) -> [u8; 32] {
        let texts = self.texts_before_bytes();
        let room = 32
            + 8
            + 9
            + texts
                .iter()
                .chain([&self.detail])
                .map(|t| TEXT_OVERHEAD + t.map_or(0, <[u8]>::len))
                .sum::<usize>()
            + 9;
        if buf.len() < room {
            buf.resize(room, 0);
        }
        let mut w = Writer { out: buf, at: 0 };
        w.bytes(prev);
        w.bytes(&seq.to_be_bytes());
        w.int(Some(self.ts));
        for f in texts {
            w.text(f);
        }
        w.int(self.bytes);
        w.text(self.detail);
        let used = w.at;
        Sha256::digest(&buf[..used]).into()
    }

    /// The JSON form's hash: SHA-256 over `prev` as 64 hex digits, `\n`, and
    /// the compact JSON array of the chain name, the position and every
    /// field, byte for byte what `serde_json` writes for them.
    pub fn json_hash(&self, prev_hex: &[u8; 64], seq: i64, buf: &mut Vec<u8>) -> [u8; 32] {
        buf.clear();
        buf.push(b'[');
        json::string(buf, self.chain());
        buf.push(b',');
        json::int(buf, Some(seq));
        buf.push(b',');
        json::int(buf, Some(self.ts));
        for f in self.texts_before_bytes() {
            buf.push(b',');
            json::opt_string(buf, f);
        }
        buf.push(b',');
        json::int(buf, self.bytes);
        buf.push(b',');
        json::opt_string(buf, self.detail);
        buf.push(b']');
        let mut h = Sha256::new();
        h.update(prev_hex);
        h.update(b"\n");
        h.update(&buf[..]);
        h.finalize().into()
    }

    /// This event's hash in the form `forms` gives it, after the hash
    /// `prev` (raw) whose hex text is `prev_hex`.
    pub fn hash(
        &self,
        forms: HashForms,
        prev: &[u8; 32],
        prev_hex: &[u8; 64],
        seq: i64,
        buf: &mut Vec<u8>,
    ) -> [u8; 32] {
        if forms.is_binary(self.id) {
            self.binary_hash(prev, seq, buf)
        } else {
            self.json_hash(prev_hex, seq, buf)
        }
    }
}

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    pairs
};

/// Lowercase hex digits of a hash (how hashes are stored). A table lookup
/// per byte: verification turns every event's hash into hex to compare it.
pub fn to_hex(h: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, b) in out.chunks_exact_mut(2).zip(h) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
    out
}

/// The raw hash behind stored hex digits (None if they are not 64 hex digits).
pub fn from_hex(h: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out).ok().map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordView<'static> {
        RecordView {
            id: 1,
            ts: -5,
            org_id: Some(b"org"),
            actor_user_id: None,
            actor_org_id: Some("a\"b\\c\n\u{7}".as_bytes()),
            credential: Some(b"session:x"),
            ip: None,
            user_agent: Some("Mozilla/5.0 日本語 \u{1F600}".as_bytes()),
            request_id: None,
            action: b"file.download",
            outcome: b"success",
            // Ids take the fixed-size copy.
            project_id: Some(b"0190a5b2-7c1d-7e3f-8a9b-0c1d2e3f4a5b"),
            node_id: Some(b"n"),
            version_id: None,
            object_name: Some(&[b'x'; 200]),
            bytes: Some(i64::MAX),
            detail: Some(b"{\"k\":[1,2]}"),
            chain_seq: None,
            chain_hash: None,
        }
    }

    /// The binary form, written out by hand from its specification.
    #[test]
    fn binary_form_is_the_specified_bytes() {
        let r = sample();
        let prev = [7u8; 32];
        let mut want: Vec<u8> = prev.to_vec();
        want.extend_from_slice(&42i64.to_be_bytes());
        want.push(1);
        want.extend_from_slice(&(-5i64).to_be_bytes());
        let text = |w: &mut Vec<u8>, s: &[u8]| {
            w.push(2);
            // Lengths under 128 take one byte; 200 takes two.
            if s.len() < 128 {
                w.push(s.len() as u8);
            } else {
                w.extend_from_slice(&[(s.len() as u8 & 0x7f) | 0x80, (s.len() >> 7) as u8]);
            }
            w.extend_from_slice(s);
        };
        text(&mut want, b"org");
        want.push(0);
        text(&mut want, "a\"b\\c\n\u{7}".as_bytes());
        text(&mut want, b"session:x");
        want.push(0);
        text(&mut want, "Mozilla/5.0 日本語 \u{1F600}".as_bytes());
        want.push(0);
        text(&mut want, b"file.download");
        text(&mut want, b"success");
        text(&mut want, b"0190a5b2-7c1d-7e3f-8a9b-0c1d2e3f4a5b");
        text(&mut want, b"n");
        want.push(0);
        text(&mut want, &[b'x'; 200]);
        want.push(1);
        want.extend_from_slice(&i64::MAX.to_be_bytes());
        text(&mut want, b"{\"k\":[1,2]}");
        let mut buf = Vec::new();
        let got = r.binary_hash(&prev, 42, &mut buf);
        // The buffer may be longer than what was hashed.
        assert_eq!(buf[..want.len()], want[..]);
        assert_eq!(got, <[u8; 32]>::from(Sha256::digest(&want)));
        // A field moved to its neighbour, or absent instead of empty,
        // changes the bytes.
        let mut moved = r;
        moved.actor_user_id = moved.org_id;
        moved.org_id = None;
        assert_ne!(moved.binary_hash(&prev, 42, &mut buf), got);
        let mut empty = r;
        empty.ip = Some(b"");
        assert_ne!(empty.binary_hash(&prev, 42, &mut buf), got);
        // A buffer left longer by a bigger event, or by the JSON form,
        // hashes only this event's bytes.
        let mut big = r;
        big.detail = Some(&[b'd'; 5000]);
        big.binary_hash(&prev, 42, &mut buf);
        assert_eq!(r.binary_hash(&prev, 42, &mut buf), got);
        r.json_hash(&[b'0'; 64], 42, &mut buf);
        assert_eq!(r.binary_hash(&prev, 42, &mut buf), got);
    }

    /// The allocation-free JSON form is byte for byte the JSON array the
    /// older events were hashed over.
    #[test]
    fn json_form_is_the_defined_json_array() {
        let r = sample();
        let s = |v: Option<&[u8]>| v.map(|b| String::from_utf8(b.to_vec()).expect("utf-8"));
        let defined = serde_json::json!([
            "org",
            7,
            r.ts,
            s(r.org_id),
            s(r.actor_user_id),
            s(r.actor_org_id),
            s(r.credential),
            s(r.ip),
            s(r.user_agent),
            s(r.request_id),
            s(Some(r.action)),
            s(Some(r.outcome)),
            s(r.project_id),
            s(r.node_id),
            s(r.version_id),
            s(r.object_name),
            r.bytes,
            s(r.detail)
        ])
        .to_string();
        let prev_hex = to_hex(&[0u8; 32]);
        let mut buf = Vec::new();
        let got = r.json_hash(&prev_hex, 7, &mut buf);
        assert_eq!(String::from_utf8_lossy(&buf), defined);
        let mut h = Sha256::new();
        h.update(prev_hex);
        h.update(b"\n");
        h.update(defined.as_bytes());
        assert_eq!(got, <[u8; 32]>::from(h.finalize()));
        // The form follows the event's id.
        let forms = HashForms { binary_after_id: 1 };
        assert_eq!(r.hash(forms, &[0; 32], &prev_hex, 7, &mut buf), got);
        let binary = HashForms { binary_after_id: 0 };
        assert_eq!(
            r.hash(binary, &[0; 32], &prev_hex, 7, &mut buf),
            r.binary_hash(&[0; 32], 7, &mut buf)
        );
    }

    #[test]
    fn hex_round_trip() {
        let h: [u8; 32] = core::array::from_fn(|i| (i * 9) as u8);
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex(b"zz"), None);
        assert_eq!(from_hex(&[b'g'; 64]), None);
        for b in 0..=255u8 {
            let h = [b; 32];
            assert_eq!(to_hex(&h)[..], hex::encode(h).as_bytes()[..]);
        }
    }
}
