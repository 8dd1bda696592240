//! Where a redirect may send the browser: a path of this UI, never another
//! site. One rule for every address a request supplies (`next` after
//! login, `back` after a form).

/// Whether `target` is a path on this site.
///
/// Browsers are lenient in ways that turn innocent-looking paths into
/// another host: they drop tabs and newlines (`/\t/evil` is `//evil`),
/// read `\` as `/` (`/\evil`), and some proxies decode `%2f` and `%5c`
/// before anyone looks. So a local path starts with one `/`, holds only
/// visible ASCII and no backslash, and its path part (before `?` or `#`)
/// has no percent-encoded slash, backslash or control character, which no
/// page of this UI needs.
pub(crate) fn is_local(target: &str) -> bool {
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.get(1) == Some(&b'/') {
        return false;
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\') {
        return false;
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    !percent_decoded(path.as_bytes()).any(|b| b == b'/' || b == b'\\' || b.is_ascii_control())
}

/// `target`, if it is local, else `fallback`.
pub(crate) fn local_or<'a>(target: Option<&'a str>, fallback: &'a str) -> &'a str {
    match target {
        Some(t) if is_local(t) => t,
        _ => fallback,
    }
}

/// The bytes that `%XY` escapes in `s` stand for (other bytes skipped).
fn percent_decoded(s: &[u8]) -> impl Iterator<Item = u8> + '_ {
    s.windows(3).filter_map(|w| {
        if w[0] != b'%' {
            return None;
        }
        let hex = std::str::from_utf8(&w[1..]).ok()?;
        u8::from_str_radix(hex, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(target: &str, local: bool) {
        assert_eq!(is_local(target), local, "{target:?}");
    }

    #[test]
    fn other_sites_however_disguised_are_not_local() {
        for hostile in [
            "",
            "evil.example",
            "//evil.example",
            "///evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "\t//evil.example",
            " /evil",
            "/ /evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/a\\b",
            "/%09/evil.example",
            "/%0a/evil.example",
            "/%0D%0A/evil.example",
            "/%00",
            "/%2f%2fevil.example",
            "/%2F/evil.example",
            "%2f%2fevil.example",
            "/%5cevil.example",
            "/%5Cevil.example",
            "https://evil.example/",
            "http:/evil.example",
            "javascript:alert(1)",
            "data:text/html,x",
            "/r/é",
        ] {
            check(hostile, false);
        }
        assert_eq!(local_or(Some("/%09/evil.example"), "/"), "/");
        assert_eq!(local_or(None, "/board"), "/board");
    }

    #[test]
    fn paths_of_this_ui_are_local() {
        for good in [
            "/",
            "/r/01jd9z8k7q3m5x",
            "/r/01abc?t=work",
            "/search?q=acme",
            "/search?q=a%2Fb%5Cc",
            "/board?owner=Zo%C3%AB&mine=1",
            "/k/company#top",
            "/%25",
            "/100%",
        ] {
            check(good, true);
        }
        assert_eq!(local_or(Some("/board?mine=1"), "/"), "/board?mine=1");
    }
}
