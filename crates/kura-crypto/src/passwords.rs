//! The shipped list of common and breached passwords (NIST SP 800-63B
//! 5.1.1.2: reject values "obtained from previous breach corpuses" and
//! "commonly-used"). The list is sorted bytewise, lower-cased, one per line
//! (see data/README.md for its source and how to regenerate it).

const LIST: &str = include_str!("../data/common-passwords.txt");

/// Whether `password` is on the list, or is a trivial pattern the list's
/// source leaves to rules (one repeated character, a run like 12345678).
pub fn is_common(password: &str) -> bool {
    let p = password.trim().to_lowercase();
    if trivial(&p) {
        return true;
    }
    static LINES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let lines = LINES.get_or_init(|| LIST.lines().collect());
    lines
        .binary_search_by(|l| l.as_bytes().cmp(p.as_bytes()))
        .is_ok()
}

fn trivial(p: &str) -> bool {
    let b = p.as_bytes();
    if b.len() < 2 {
        return true;
    }
    let same = b.iter().all(|c| *c == b[0]);
    let step = |d: i16| b.windows(2).all(|w| i16::from(w[1]) - i16::from(w[0]) == d);
    // Repeats of a short unit (abcabcab, 12341234).
    let repeated = (1..=4)
        .any(|unit| b.len() >= unit * 2 && b.iter().enumerate().all(|(i, c)| *c == b[i % unit]));
    same || step(1) || step(-1) || repeated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_and_matches() {
        let lines: Vec<&str> = LIST.lines().collect();
        assert!(lines.len() > 10_000);
        assert!(lines.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
        assert!(is_common("password1234"));
        assert!(is_common("PASSWORD1234"));
        assert!(is_common("00000000"));
        assert!(is_common("87654321"));
        assert!(is_common("12341234"));
        assert!(is_common("abcdefgh"));
        assert!(!is_common("a long enough password"));
        assert!(!is_common("correct horse battery staple"));
    }
}
