//! Message catalogs. Every string the web interface shows comes from
//! `locales/<lang>.json`; both catalogs must have the same keys (a unit test
//! checks). The language is the user's setting, else the browser's
//! Accept-Language, else English.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub fn code(&self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The first supported language in an Accept-Language header (by q-value).
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',').take(20) {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if q <= 0.0 {
                continue; // q=0 means "not acceptable"
            }
            if let Some(l) = Lang::parse(primary) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        best.map(|(_, l)| l)
    }
}

type Catalog = HashMap<String, String>;

fn load(json: &str) -> Catalog {
    serde_json::from_str(json).unwrap_or_default()
}

fn catalog(lang: Lang) -> &'static Catalog {
    static EN: OnceLock<Catalog> = OnceLock::new();
    static JA: OnceLock<Catalog> = OnceLock::new();
    match lang {
        Lang::En => EN.get_or_init(|| load(include_str!("../../locales/en.json"))),
        Lang::Ja => JA.get_or_init(|| load(include_str!("../../locales/ja.json"))),
    }
}

/// Translator handed to templates: `{{ t.t("key") }}`.
#[derive(Clone, Copy, Debug)]
pub struct T {
    pub lang: Lang,
}

impl T {
    pub fn t<'a>(&self, key: &'a str) -> &'a str {
        match catalog(self.lang)
            .get(key)
            .or_else(|| catalog(Lang::En).get(key))
        {
            // The catalogs live for the whole program.
            Some(s) => s.as_str(),
            None => key,
        }
    }

    /// A message with `{name}` placeholders filled in.
    pub fn f(&self, key: &str, args: &[(&str, &str)]) -> String {
        let mut s = self.t(key).to_string();
        for (k, v) in args {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    pub fn code(&self) -> &'static str {
        self.lang.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogs_have_the_same_keys_and_no_empty_values() {
        let en = catalog(Lang::En);
        let ja = catalog(Lang::Ja);
        assert!(en.len() > 50, "English catalog loaded");
        let mut missing: Vec<_> = en.keys().filter(|k| !ja.contains_key(*k)).collect();
        missing.extend(ja.keys().filter(|k| !en.contains_key(*k)));
        assert!(
            missing.is_empty(),
            "keys missing in one catalog: {missing:?}"
        );
        assert!(en.values().chain(ja.values()).all(|v| !v.trim().is_empty()));
    }

    #[test]
    fn every_key_used_in_templates_exists() {
        let en = catalog(Lang::En);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src/web");
        let mut missing = Vec::new();
        for d in [dir, src] {
            for f in std::fs::read_dir(d).unwrap().flatten() {
                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                for part in text.split("t(\"").skip(1) {
                    let key = part.split('"').next().unwrap_or("");
                    if key.contains('.') && !en.contains_key(key) {
                        missing.push(format!("{}: {key}", f.path().display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }

    #[test]
    fn accept_language() {
        assert_eq!(Lang::from_accept_language("ja,en-US;q=0.8"), Some(Lang::Ja));
        assert_eq!(
            Lang::from_accept_language("fr, en;q=0.5, ja;q=0.9"),
            Some(Lang::Ja)
        );
        assert_eq!(Lang::from_accept_language("de"), None);
        assert_eq!(Lang::from_accept_language("en-GB"), Some(Lang::En));
        assert_eq!(
            Lang::from_accept_language("ja;q=0, en;q=0.1"),
            Some(Lang::En)
        );
    }
}
