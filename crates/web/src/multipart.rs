//! The parts of a `multipart/form-data` body (RFC 7578): what a form with
//! a file input sends. Only what the import form needs: each part's name,
//! file name and bytes; the body is already in memory (bounded by the
//! route's body limit).

/// One field of the form.
#[derive(Debug)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// The parts of `body`, sent with `content_type`; `Err` says what is wrong.
pub(crate) fn parts(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or("the form was not sent as multipart/form-data with a boundary")?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut rest = body;
    let first = find(rest, delimiter).ok_or("the form has no parts")?;
    rest = &rest[first + delimiter.len()..];
    let mut out = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(out);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("a part of the form is malformed")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a part of the form has no end of headers")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        rest = &rest[head_end + 4..];
        let mut next = Vec::with_capacity(delimiter.len() + 2);
        next.extend_from_slice(b"\r\n");
        next.extend_from_slice(delimiter);
        let end = find(rest, &next).ok_or("the form was cut short")?;
        let data = rest[..end].to_vec();
        rest = &rest[end + next.len()..];
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .unwrap_or("");
        let Some(name) = param(disposition, "name") else {
            continue;
        };
        out.push(Part {
            name,
            filename: param(disposition, "filename"),
            data,
        });
    }
}

/// `key="value"` of a header line.
fn param(line: &str, key: &str) -> Option<String> {
    line.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(key)).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browsers_form_with_a_file_splits_into_its_parts() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nperson\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"people.csv\"\r\nContent-Type: text/csv\r\n\r\nName,Email\r\n--not-it\r\nAda,a@x.org\r\n\r\n--XyZ--\r\n";
        let parts = parts("multipart/form-data; boundary=XyZ", body).expect("parts");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), parts[0].data.as_slice()),
            ("kind", &b"person"[..])
        );
        assert_eq!(parts[1].filename.as_deref(), Some("people.csv"));
        assert_eq!(parts[1].data, b"Name,Email\r\n--not-it\r\nAda,a@x.org\r\n");
    }

    #[test]
    fn malformed_forms_are_refused() {
        assert!(parts("multipart/form-data", b"").is_err());
        assert!(parts("multipart/form-data; boundary=a", b"--a\r\nno end").is_err());
        assert!(parts("multipart/form-data; boundary=a", b"nothing").is_err());
    }
}
