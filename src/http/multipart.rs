//! A `multipart/form-data` body (RFC 7578, in RFC 2046's syntax) read as a
//! form: its text parts are fields exactly like an
//! `application/x-www-form-urlencoded` body's, a file part is refused.
//!
//! The body is already in memory (and within the body limit) when it is
//! read, so the reader is one pass over it, borrowing the parts' bytes
//! until each text part's one copy: a streaming reader (multer, which this
//! replaced) cost 3.2 times a JSON body of the same fields, for machinery
//! an in-memory body does not need.

use serde_json::{Map, Value};

use crate::error::WebhookError;
use crate::form::insert_repeated;

/// The most characters of a part's name an error repeats.
const MAX_NAME_SHOWN: usize = 64;

/// RFC 2046's limit on a boundary's length.
const MAX_BOUNDARY_LEN: usize = 70;

/// Where `needle` (which starts with a CR, and holds no other: a
/// delimiter, whose boundary RFC 2046 allows no CR in, or the empty line
/// after a part's headers) first occurs in `haystack`. Each CR is a
/// candidate and a candidate's comparison stops at the next CR at the
/// latest, so the search is linear in the haystack (and costs nothing to
/// set up, unlike a substring finder: most of a form-sized body's read).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\r', haystack).find(|&at| haystack[at..].starts_with(needle))
}

/// RFC 2046's `bchars`: what a boundary may be made of.
fn is_boundary_byte(c: u8) -> bool {
    matches!(
        c,
        b'0'..=b'9'
            | b'a'..=b'z'
            | b'A'..=b'Z'
            | b'\''
            | b'('
            | b')'
            | b'+'
            | b'_'
            | b','
            | b'-'
            | b'.'
            | b'/'
            | b':'
            | b'='
            | b'?'
            | b' '
    )
}

fn malformed(problem: &'static str) -> WebhookError {
    WebhookError::MalformedMultipart { problem }
}

/// Reads a `multipart/form-data` body with `boundary` (from its
/// `Content-Type`) as an object of strings, as `parse_form` reads a form: a
/// repeated name is an array of its strings, in order; each name and each
/// value counts against `max_values`; the body may not be larger than
/// `body_limit`. The preamble and the epilogue are ignored.
///
/// # Errors
///
/// `415 file_part` for a part with a file name or a content type that is
/// not text, naming it; `400 malformed_payload` for a body that is not
/// multipart with this boundary, a part without a name, a part whose
/// headers are malformed or a part that is not UTF-8; `413
/// payload_too_large` over the limits.
pub(crate) fn parse_multipart(
    body: &[u8],
    boundary: &str,
    max_values: usize,
    body_limit: usize,
) -> Result<Map<String, Value>, WebhookError> {
    if body.len() > body_limit {
        return Err(WebhookError::PayloadTooLarge { limit: body_limit });
    }
    // The delimiter: CRLF, two hyphens and the boundary. The first may
    // open the body without the CRLF (no preamble).
    let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    let mut at = if body.starts_with(&delimiter[2..]) {
        delimiter.len() - 2
    } else {
        find(body, &delimiter)
            .map(|start| start + delimiter.len())
            .ok_or(malformed("the body is not multipart/form-data with its boundary"))?
    };
    let mut payload = Map::new();
    let mut values = 0_usize;
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            // The close delimiter: what follows is the epilogue.
            return Ok(payload);
        }
        // Transport padding, then the CRLF that ends the delimiter's line.
        let padding = rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        if !rest[padding..].starts_with(b"\r\n") {
            return Err(malformed("the body ended before its last boundary"));
        }
        let part_start = at + padding + 2;
        let part_end = find(&body[part_start..], &delimiter)
            .map(|end| part_start + end)
            .ok_or(malformed("the body ended before its last boundary"))?;
        let (name, value) = read_part(&body[part_start..part_end])?;
        values += 2;
        if values > max_values {
            return Err(WebhookError::TooManyJsonValues { limit: max_values });
        }
        insert_repeated(&mut payload, name, Value::String(value));
        at = part_end + delimiter.len();
    }
}

/// One part: its headers, an empty line, its content. The part's name and
/// its text.
fn read_part(part: &[u8]) -> Result<(String, String), WebhookError> {
    let (headers, content) = if let Some(content) = part.strip_prefix(b"\r\n") {
        (&b""[..], content)
    } else {
        let end = find(part, b"\r\n\r\n").ok_or(malformed("a part's headers are malformed"))?;
        (&part[..end], &part[end + 4..])
    };
    let headers = std::str::from_utf8(headers).map_err(|_| malformed("a part's headers are malformed"))?;
    let (mut name, mut file, mut text) = (None, false, true);
    // Lines end in CRLF (the last one's is the empty line's): split on the
    // LF, which `str::split` finds with memchr.
    for line in headers
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
    {
        if line.is_empty() {
            continue;
        }
        let (header, value) = line
            .split_once(':')
            .ok_or(malformed("a part's headers are malformed"))?;
        let header = header.trim_ascii();
        if header.eq_ignore_ascii_case("content-disposition") {
            let mut params = parameters(value);
            let disposition = params.next().map(|(kind, _)| kind);
            if !disposition.is_some_and(|d| d.eq_ignore_ascii_case("form-data")) {
                return Err(malformed("a part is not form-data"));
            }
            for (key, value) in params {
                if key.eq_ignore_ascii_case("name") {
                    name = Some(value.to_owned());
                } else if key.eq_ignore_ascii_case("filename") || key.eq_ignore_ascii_case("filename*") {
                    file = true;
                }
            }
        } else if header.eq_ignore_ascii_case("content-type") {
            let essence = value.split(';').next().unwrap_or("").trim_ascii();
            text = essence
                .split_once('/')
                .is_some_and(|(kind, _)| kind.eq_ignore_ascii_case("text"));
        }
    }
    let name = name.ok_or(malformed("a part has no name"))?;
    if file || !text {
        return Err(WebhookError::FilePart {
            part: name.chars().take(MAX_NAME_SHOWN).collect(),
        });
    }
    let content = std::str::from_utf8(content).map_err(|_| malformed("a part is not UTF-8 text"))?;
    Ok((name, content.to_owned()))
}

/// A header value's `;`-separated items: the first as `(value, "")`, each
/// parameter as `(name, value)`, a quoted value unquoted. A backslash is
/// itself, not an escape: browsers' `FormData` encoding sends a name's
/// backslashes as they are (and its quotes as `%22`), so reading
/// `quoted-pair`s would change names that browsers send.
fn parameters(value: &str) -> impl Iterator<Item = (&str, &str)> + '_ {
    // On bytes: every delimiter is ASCII, so each index cut at one is a
    // character boundary.
    let bytes = value.as_bytes();
    let len = bytes.len();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < len && matches!(bytes[at], b' ' | b'\t' | b';') {
            at += 1;
        }
        if at == len {
            return None;
        }
        let start = at;
        at = memchr::memchr2(b'=', b';', &bytes[start..]).map_or(len, |i| start + i);
        let key = value[start..at].trim_ascii();
        if at == len || bytes[at] == b';' {
            return Some((key, ""));
        }
        at += 1;
        while at < len && matches!(bytes[at], b' ' | b'\t') {
            at += 1;
        }
        if at < len && bytes[at] == b'"' {
            let open = at + 1;
            let close = memchr::memchr(b'"', &bytes[open..]).map_or(len, |i| open + i);
            at = (close + 1).min(len);
            Some((key, &value[open..close]))
        } else {
            let start = at;
            at = memchr::memchr(b';', &bytes[start..]).map_or(len, |i| start + i);
            Some((key, value[start..at].trim_ascii()))
        }
    })
}

/// The boundary of a `multipart/form-data` `Content-Type`, or `None` for
/// any other media type. `Some(None)`: multipart without a usable boundary
/// (absent, empty, over RFC 2046's 70 characters, or of other characters
/// than its `bchars`, or ending in a space).
pub(crate) fn multipart_boundary(content_type: &str) -> Option<Option<Box<str>>> {
    let mut params = parameters(content_type);
    let essence = params.next()?.0;
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    Some(
        params
            .find(|(key, _)| key.eq_ignore_ascii_case("boundary"))
            .map(|(_, boundary)| boundary)
            .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY_LEN && !b.ends_with(' '))
            .filter(|b| b.bytes().all(is_boundary_byte))
            .map(Box::from),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut body = String::new();
        for (headers, value) in parts {
            body.push_str(&format!("--XyZ\r\n{headers}\r\n\r\n{value}\r\n"));
        }
        body.push_str("--XyZ--\r\n");
        body.into_bytes()
    }

    fn read(body: &[u8]) -> Result<Value, &'static str> {
        parse_multipart(body, "XyZ", 100, 1024)
            .map(Value::Object)
            .map_err(|e| e.code())
    }

    #[test]
    fn text_parts_are_fields_and_a_repeated_name_is_an_array() {
        let body = body(&[
            (
                "Content-Disposition: form-data; name=\"customerName\"",
                "John Doe",
            ),
            (
                "Content-Disposition: form-data; name=\"tag\"\r\nContent-Type: text/plain; charset=utf-8",
                "a",
            ),
            ("content-disposition: FORM-DATA; name=tag", "b"),
            ("Content-Disposition: form-data; name=\"tag\"", "c"),
            ("Content-Disposition: form-data; name=\"empty\"", ""),
            (
                "Content-Disposition: form-data; name=\"lines\"",
                "one\r\ntwo --XyZ three\r\n",
            ),
            ("Content-Disposition: form-data; name=\"a\\b\"", "backslash"),
        ]);
        assert_eq!(
            read(&body),
            Ok(json!({
                "customerName": "John Doe",
                "tag": ["a", "b", "c"],
                "empty": "",
                "lines": "one\r\ntwo --XyZ three\r\n",
                "a\\b": "backslash",
            }))
        );
        assert_eq!(read(b"--XyZ--\r\n"), Ok(json!({})));
        // A preamble, transport padding and an epilogue are ignored.
        assert_eq!(
            read(
                b"preamble\r\n--XyZ \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--XyZ--epilogue"
            ),
            Ok(json!({"a": "1"}))
        );
    }

    #[test]
    fn a_file_part_is_refused_by_name() {
        for headers in [
            "Content-Disposition: form-data; name=\"invoice\"; filename=\"a.txt\"",
            "Content-Disposition: form-data; filename*=utf-8''a.txt; name=\"invoice\"",
            "Content-Disposition: form-data; name=\"invoice\"\r\nContent-Type: application/pdf",
            "Content-Disposition: form-data; name=\"invoice\"\r\nContent-Type: pdf",
        ] {
            let error = parse_multipart(&body(&[(headers, "%PDF")]), "XyZ", 100, 1024).unwrap_err();
            assert_eq!((error.status(), error.code()), (415, "file_part"), "{headers}");
            assert_eq!(
                error.to_string(),
                "part `invoice` of the multipart body is a file: only text parts can be start fields"
            );
        }
        let long = format!(
            "Content-Disposition: form-data; name=\"{}\"; filename=\"f\"",
            "n".repeat(100)
        );
        match parse_multipart(&body(&[(&long, "x")]), "XyZ", 100, 1024) {
            Err(WebhookError::FilePart { part }) => assert_eq!(part, "n".repeat(64)),
            other => panic!("{other:?}"),
        }
        // A file name alone, without `name`, has no name to refuse.
        let nameless = body(&[("Content-Disposition: form-data; filename=\"f\"", "x")]);
        assert_eq!(read(&nameless), Err("malformed_payload"));
    }

    #[test]
    fn a_malformed_body_is_400_and_one_over_the_limits_413() {
        let problem = |body: &[u8]| match parse_multipart(body, "XyZ", 100, 1024) {
            Err(WebhookError::MalformedMultipart { problem }) => problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(&body(&[("Content-Disposition: form-data", "x")])),
            "a part has no name"
        );
        assert_eq!(
            problem(&body(&[("Content-Disposition: attachment; name=a", "x")])),
            "a part is not form-data"
        );
        assert_eq!(
            problem(&body(&[("Content-Type: text/plain", "x")])),
            "a part has no name"
        );
        assert_eq!(
            problem(&body(&[("no colon here", "x")])),
            "a part's headers are malformed"
        );
        assert_eq!(
            problem(b"--XyZ\r\nContent-Disposition: form-data; name=a"),
            "the body ended before its last boundary"
        );
        let mut not_utf8 = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".to_vec();
        not_utf8.extend([0xff, 0xfe]);
        not_utf8.extend(b"\r\n--XyZ--\r\n");
        assert_eq!(problem(&not_utf8), "a part is not UTF-8 text");
        let mut header_not_utf8 = b"--XyZ\r\nContent-Disposition: form-data; name=\"".to_vec();
        header_not_utf8.extend([0xff, b'"']);
        header_not_utf8.extend(b"\r\n\r\nx\r\n--XyZ--\r\n");
        assert_eq!(problem(&header_not_utf8), "a part's headers are malformed");
        assert_eq!(
            problem(b"not multipart at all"),
            "the body is not multipart/form-data with its boundary"
        );
        assert_eq!(
            problem(b""),
            "the body is not multipart/form-data with its boundary"
        );
        for cut in [
            &b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"[..],
            b"--XyZ",
            b"--XyZ\r\n",
            b"--XyZx\r\n",
        ] {
            assert_eq!(problem(cut), "the body ended before its last boundary", "{cut:?}");
        }
        // A part with no headers at all has no name.
        assert_eq!(problem(b"--XyZ\r\n\r\nx\r\n--XyZ--"), "a part has no name");
        // Fifty fields are 100 values, the limit; fifty-one are over it.
        let fields = |n: usize| -> Vec<(&str, &str)> {
            (0..n)
                .map(|_| ("Content-Disposition: form-data; name=\"a\"", "x"))
                .collect()
        };
        assert!(parse_multipart(&body(&fields(50)), "XyZ", 100, 4096).is_ok());
        assert_eq!(
            parse_multipart(&body(&fields(51)), "XyZ", 100, 4096).map_err(|e| e.code()),
            Err("payload_too_large")
        );
        let big = "x".repeat(2000);
        assert_eq!(
            read(&body(&[("Content-Disposition: form-data; name=\"a\"", &big)])),
            Err("payload_too_large")
        );
        // The limit is inclusive.
        let exact = body(&[("Content-Disposition: form-data; name=\"a\"", "x")]);
        assert!(parse_multipart(&exact, "XyZ", 100, exact.len()).is_ok());
    }

    #[test]
    fn only_multipart_form_data_has_a_boundary() {
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=XyZ"),
            Some(Some("XyZ".into()))
        );
        assert_eq!(
            multipart_boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b\""),
            Some(Some("a b".into()))
        );
        assert_eq!(multipart_boundary("multipart/form-data"), Some(None));
        assert_eq!(multipart_boundary("multipart/form-data; boundary="), Some(None));
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"\""),
            Some(None)
        );
        let longest = "b".repeat(70);
        assert_eq!(
            multipart_boundary(&format!("multipart/form-data; boundary={longest}")),
            Some(Some(longest.into()))
        );
        let too_long = "b".repeat(71);
        assert_eq!(
            multipart_boundary(&format!("multipart/form-data; boundary={too_long}")),
            Some(None)
        );
        for bad in ["\"a\rb\"", "\"a\nb\"", "a\u{e9}", "\"ab \"", "a\"b"] {
            assert_eq!(
                multipart_boundary(&format!("multipart/form-data; boundary={bad}")),
                Some(None),
                "{bad:?}"
            );
        }
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"'()+_,-./:=? x\""),
            Some(Some("'()+_,-./:=? x".into()))
        );
        assert_eq!(multipart_boundary("multipart/mixed; boundary=XyZ"), None);
        assert_eq!(multipart_boundary("application/json"), None);
        assert_eq!(multipart_boundary(""), None);
    }

    #[test]
    fn the_search_finds_the_first_whole_needle() {
        assert_eq!(find(b"ab\r\r\n--X\r\n--X", b"\r\n--X"), Some(3));
        assert_eq!(find(b"\r\n--Y\r\n-", b"\r\n--X"), None);
        assert_eq!(find(b"", b"\r\n"), None);
        assert_eq!(find(b"\r\r\r\n\r\n", b"\r\n\r\n"), Some(2));
    }

    #[test]
    fn parameters_are_split_outside_quotes_and_unquoted() {
        let pairs: Vec<(&str, &str)> =
            parameters(r#"form-data; name="a;b"; filename=x.txt ;empty=; q="\"; flag"#).collect();
        assert_eq!(
            pairs,
            [
                ("form-data", ""),
                ("name", "a;b"),
                ("filename", "x.txt"),
                ("empty", ""),
                ("q", "\\"),
                ("flag", "")
            ]
        );
        // An unterminated quote takes the rest.
        let open: Vec<(&str, &str)> = parameters(r#"form-data; name="abc"#).collect();
        assert_eq!(open[1], ("name", "abc"));
    }

    /// A part as WHATWG's `FormData` encoding writes it: a name's `"`, CR
    /// and LF percent-encoded, the value as it is.
    fn encoded(parts: &[(String, String)], boundary: &str) -> Vec<u8> {
        let mut body = String::new();
        for (name, value) in parts {
            let name = name.replace('"', "%22").replace('\r', "%0D").replace('\n', "%0A");
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        body.into_bytes()
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_read_or_refused_and_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_multipart(&body, "XyZ", 100, 1024);
            let _ = multipart_boundary(&String::from_utf8_lossy(&body));
        }

        #[test]
        fn parts_written_by_the_form_data_encoding_are_read_back(
            parts in proptest::collection::vec(("[a-z\"\\\\ ]{1,6}", "[a-z\r\n\"\\- ]{0,12}"), 0..6),
        ) {
            // A boundary none of the values holds, as encoders choose one.
            let boundary = "----formdata-undici-0123456789";
            let parts: Vec<(String, String)> = parts;
            let read = parse_multipart(&encoded(&parts, boundary), boundary, 100, 4096).unwrap();
            let mut expected = Map::new();
            for (name, value) in &parts {
                // The encoding's `%22` stays: it is what the name is sent as.
                let unescaped = name.replace('"', "%22");
                crate::form::insert_repeated(&mut expected, unescaped, Value::String(value.clone()));
            }
            proptest::prop_assert_eq!(read, expected);
        }
    }
}
