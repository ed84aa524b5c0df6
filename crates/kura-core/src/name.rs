//! File and folder names. A `FileName` is NFC-normalized and can never be
//! empty, `.`/`..`, contain a separator, NUL or a control character, or exceed
//! 255 bytes. Names are metadata only: they never become filesystem paths.

use serde::Serialize;
use std::fmt;
use unicode_normalization::UnicodeNormalization;

pub const MAX_NAME_BYTES: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FileName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("'.' and '..' are not allowed as names")]
    DotName,
    #[error("the name contains '/' or '\\'")]
    Separator,
    #[error("the name contains NUL or a control character")]
    Control,
    #[error("the name is {0} bytes long; at most 255 bytes (UTF-8) are allowed")]
    TooLong(usize),
}

impl FileName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let nfc: String = raw.nfc().collect();
        if nfc.is_empty() {
            return Err(NameError::Empty);
        }
        if nfc == "." || nfc == ".." {
            return Err(NameError::DotName);
        }
        if nfc.contains('/') || nfc.contains('\\') {
            return Err(NameError::Separator);
        }
        if nfc.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if nfc.len() > MAX_NAME_BYTES {
            return Err(NameError::TooLong(nfc.len()));
        }
        Ok(Self(nfc))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_to_nfc() {
        let decomposed = "ka\u{304B}\u{3099}.txt"; // か + combining dakuten
        let n = FileName::parse(decomposed).unwrap();
        assert_eq!(n.as_str(), "ka\u{304C}.txt");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(FileName::parse(""), Err(NameError::Empty));
        assert_eq!(FileName::parse("."), Err(NameError::DotName));
        assert_eq!(FileName::parse(".."), Err(NameError::DotName));
        assert_eq!(FileName::parse("a/b"), Err(NameError::Separator));
        assert_eq!(FileName::parse("a\\b"), Err(NameError::Separator));
        assert_eq!(FileName::parse("a\0b"), Err(NameError::Control));
        assert_eq!(FileName::parse("a\nb"), Err(NameError::Control));
        assert_eq!(FileName::parse("a\u{7f}"), Err(NameError::Control));
        assert_eq!(
            FileName::parse(&"x".repeat(256)),
            Err(NameError::TooLong(256))
        );
        assert!(FileName::parse(&"x".repeat(255)).is_ok());
        // 86 three-byte characters = 258 bytes
        assert_eq!(
            FileName::parse(&"あ".repeat(86)),
            Err(NameError::TooLong(258))
        );
        assert!(FileName::parse("..hidden").is_ok());
        assert!(FileName::parse("<img src=x onerror=alert(1)>.html").is_ok());
    }
}
