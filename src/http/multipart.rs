//! A `multipart/form-data` body (RFC 7578) read as a form: its text parts
//! are fields exactly like an `application/x-www-form-urlencoded` body's,
//! a file part is refused.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use serde_json::{Map, Value};

use crate::error::WebhookError;

/// The most characters of a part's name an error repeats.
const MAX_NAME_SHOWN: usize = 64;

/// Reads a `multipart/form-data` body with `boundary` (from its
/// `Content-Type`) as an object of strings, as [`parse_form`] reads a
/// form: a repeated name is an array of its strings, in order; each name and
/// each value counts against `max_values`; no part may be larger than
/// `body_limit`, nor the whole body.
///
/// # Errors
///
/// `415 file_part` for a part with a file name or a content type that is
/// not text, naming it; `400 malformed_payload` for a body that is not
/// multipart with this boundary, a part without a name or a part that is
/// not UTF-8; `413 payload_too_large` over the limits.
///
/// [`parse_form`]: super::parse_form
pub(crate) fn parse_multipart(
    body: &[u8],
    boundary: &str,
    max_values: usize,
    body_limit: usize,
) -> Result<Map<String, Value>, WebhookError> {
    let limit = u64::try_from(body_limit).unwrap_or(u64::MAX);
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit).per_field(limit));
    // multer reads a stream of chunks it owns: the body is one.
    let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body.to_vec())]);
    let mut multipart = multer::Multipart::with_constraints(stream, boundary.to_owned(), constraints);
    let read = async move {
        let mut payload = Map::new();
        let mut values = 0_usize;
        while let Some(field) = multipart.next_field().await.map_err(|e| refused(e, body_limit))? {
            let name = field
                .name()
                .ok_or(WebhookError::MalformedMultipart {
                    problem: "a part has no name",
                })?
                .to_owned();
            let text = field
                .content_type()
                .is_none_or(|mime| mime.type_().as_str() == "text");
            if field.file_name().is_some() || !text {
                return Err(WebhookError::FilePart {
                    part: name.chars().take(MAX_NAME_SHOWN).collect(),
                });
            }
            values += 2;
            if values > max_values {
                return Err(WebhookError::TooManyJsonValues { limit: max_values });
            }
            let bytes = field.bytes().await.map_err(|e| refused(e, body_limit))?;
            let value = String::from_utf8(bytes.into()).map_err(|_| WebhookError::MalformedMultipart {
                problem: "a part is not UTF-8 text",
            })?;
            let value = Value::String(value);
            match payload.get_mut(&name) {
                None => {
                    payload.insert(name, value);
                }
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
            }
        }
        Ok(payload)
    };
    // The whole body is in memory: the reader never waits, so one poll
    // finishes it (and a reader that did wait would be a malformed body,
    // never a hang).
    let mut read = std::pin::pin!(read);
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(WebhookError::MalformedMultipart {
            problem: "the body ended before its last boundary",
        }),
    }
}

/// The error of a body multer cannot read.
fn refused(error: multer::Error, body_limit: usize) -> WebhookError {
    match error {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            WebhookError::PayloadTooLarge { limit: body_limit }
        }
        multer::Error::IncompleteStream | multer::Error::IncompleteFieldData { .. } => {
            WebhookError::MalformedMultipart {
                problem: "the body ended before its last boundary",
            }
        }
        multer::Error::IncompleteHeaders | multer::Error::ReadHeaderFailed(_) => {
            WebhookError::MalformedMultipart {
                problem: "a part's headers are malformed",
            }
        }
        _ => WebhookError::MalformedMultipart {
            problem: "the body is not multipart/form-data with its boundary",
        },
    }
}

/// The boundary of a `multipart/form-data` `Content-Type`, or `None` for
/// any other media type. `Some(None)`: multipart without a usable boundary.
pub(crate) fn multipart_boundary(content_type: &str) -> Option<Option<Box<str>>> {
    let essence = content_type.split(';').next().unwrap_or("").trim_ascii();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    Some(
        multer::parse_boundary(content_type)
            .ok()
            .map(String::into_boxed_str),
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
            ("Content-Disposition: form-data; name=\"tag\"", "b"),
            ("Content-Disposition: form-data; name=\"tag\"", "c"),
            ("Content-Disposition: form-data; name=\"empty\"", ""),
        ]);
        assert_eq!(
            read(&body),
            Ok(json!({"customerName": "John Doe", "tag": ["a", "b", "c"], "empty": ""}))
        );
        assert_eq!(read(b"--XyZ--\r\n"), Ok(json!({})));
    }

    #[test]
    fn a_file_part_is_refused_by_name() {
        for headers in [
            "Content-Disposition: form-data; name=\"invoice\"; filename=\"a.txt\"",
            "Content-Disposition: form-data; name=\"invoice\"\r\nContent-Type: application/pdf",
        ] {
            let error = parse_multipart(&body(&[(headers, "%PDF")]), "XyZ", 100, 1024).unwrap_err();
            assert_eq!((error.status(), error.code()), (415, "file_part"));
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
    }

    #[test]
    fn a_malformed_body_is_400_and_one_over_the_limits_413() {
        let nameless = body(&[("Content-Disposition: form-data", "x")]);
        assert_eq!(read(&nameless), Err("malformed_payload"));
        let mut not_utf8 = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n".to_vec();
        not_utf8.extend([0xff, 0xfe]);
        not_utf8.extend(b"\r\n--XyZ--\r\n");
        assert_eq!(read(&not_utf8), Err("malformed_payload"));
        assert_eq!(read(b"not multipart at all"), Err("malformed_payload"));
        assert_eq!(
            read(b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"),
            Err("malformed_payload")
        );
        // Fifty-one fields are 102 values, over 100.
        let many: Vec<(&str, &str)> = (0..51)
            .map(|_| ("Content-Disposition: form-data; name=\"a\"", "x"))
            .collect();
        assert_eq!(read(&body(&many)), Err("payload_too_large"));
        let big = "x".repeat(2000);
        assert_eq!(
            read(&body(&[("Content-Disposition: form-data; name=\"a\"", &big)])),
            Err("payload_too_large")
        );
    }

    #[test]
    fn only_multipart_form_data_has_a_boundary() {
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=XyZ"),
            Some(Some("XyZ".into()))
        );
        assert_eq!(
            multipart_boundary("Multipart/Form-Data; boundary=\"a b\""),
            Some(Some("a b".into()))
        );
        assert_eq!(multipart_boundary("multipart/form-data"), Some(None));
        assert_eq!(multipart_boundary("multipart/mixed; boundary=XyZ"), None);
        assert_eq!(multipart_boundary("application/json"), None);
    }
}
