//! `JsonQuery`: a singular RFC 9535 JSONPath query, checked when it is
//! parsed, that selects at most one value of a delivery's document.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use serde_json_path::{JsonPath, PathElement};

/// A singular [RFC 9535](https://www.rfc-editor.org/rfc/rfc9535) JSONPath
/// query: `$` followed by names and indexes only (`$.body.sender.login`,
/// `$.headers['x-github-event']`, `$.body.commits[0].id`, `$.body.items[-1]`),
/// so that it selects at most one value. Wildcards, slices, filters,
/// unions and descendants (`*`, `[0:2]`, `[?…]`, `[0,1]`, `..`) can select
/// several and are refused when the query is parsed, never when a delivery
/// comes.
///
/// A source's queries run over one document per delivery:
/// `{"body": …, "headers": {lower-case name: value}, "query": {name: value}}`.
///
/// # Example
///
/// ```
/// use process_webhook::JsonQuery;
/// use serde_json::json;
///
/// let login: JsonQuery = "$.body.sender.login".parse().unwrap();
/// let document = json!({"body": {"sender": {"login": "octocat"}}});
/// assert_eq!(login.select(&document), Some(&json!("octocat")));
///
/// let error = "$.body.commits[*].id".parse::<JsonQuery>().unwrap_err();
/// assert_eq!(error.position(), 14);
/// assert_eq!(
///     error.to_string(),
///     "JSONPath query `$.body.commits[*].id` at position 14: not singular: \
///      it may select several values (use names and indexes only)"
/// );
/// ```
#[derive(Clone)]
pub struct JsonQuery {
    text: Box<str>,
    path: JsonPath,
}

/// Where a selected value came from: the body, or text (headers, query).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Body,
    Text,
}

impl JsonQuery {
    /// Parses a singular query.
    ///
    /// # Errors
    ///
    /// [`InvalidQuery`], with the position (in bytes) where the query goes
    /// wrong: not JSONPath, or not singular.
    pub fn parse(text: &str) -> Result<Self, InvalidQuery> {
        let invalid = |position: usize, message: String| InvalidQuery {
            query: text.to_owned(),
            position: position.min(text.len()),
            message,
        };
        let path = JsonPath::parse(text).map_err(|e| invalid(e.position(), e.message().to_owned()))?;
        // RFC 9535's comparisons take singular queries only
        // (`abs-singular-query`, section 2.3.5.1): the library's own parser
        // of a comparison is the check. Its error points at the end, so the
        // position is where the longest singular prefix ends: the first
        // segment that may select several values.
        let singular = |query: &str| JsonPath::parse(&format!("$[?{query}==null]")).is_ok();
        if !singular(text) {
            let position = (1..text.len())
                .rev()
                .filter(|&end| text.is_char_boundary(end))
                .find(|&end| singular(&text[..end]))
                .unwrap_or(0);
            return Err(invalid(
                position,
                "not singular: it may select several values (use names and indexes only)".to_owned(),
            ));
        }
        Ok(Self {
            text: text.into(),
            path,
        })
    }

    /// The query as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The one value the query selects in `document`, if any.
    pub fn select<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        // Singular: at most one node, by construction.
        self.path.query(document).at_most_one().ok().flatten()
    }

    /// The value, and whether it came from the document's `body` or from
    /// its text members (`headers`, `query`).
    pub(crate) fn select_with_origin<'a>(&self, document: &'a Value) -> Option<(&'a Value, Origin)> {
        let node = self.path.query_located(document).at_most_one().ok().flatten()?;
        let origin = match node.location().first() {
            Some(PathElement::Name("body")) => Origin::Body,
            _ => Origin::Text,
        };
        Some((node.node(), origin))
    }
}

impl FromStr for JsonQuery {
    type Err = InvalidQuery;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl PartialEq for JsonQuery {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonQuery {}

impl fmt::Debug for JsonQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonQuery").field(&&*self.text).finish()
    }
}

impl fmt::Display for JsonQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for JsonQuery {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for JsonQuery {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A [`JsonQuery`] that cannot be parsed: not JSONPath, or not singular.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSONPath query `{query}` at position {position}: {message}")]
pub struct InvalidQuery {
    query: String,
    position: usize,
    message: String,
}

impl InvalidQuery {
    /// The query as written.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Where in the query (in bytes from its start) it goes wrong.
    pub fn position(&self) -> usize {
        self.position
    }

    /// What is wrong there.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_indexes_are_singular_and_select_at_most_one_value() {
        let document = json!({"body": {"a": [10, 20, {"b c": true}]}, "headers": {"x-e": "push"}});
        for (query, expected) in [
            ("$.body.a[0]", Some(json!(10))),
            ("$.body.a[-1]['b c']", Some(json!(true))),
            ("$['headers']['x-e']", Some(json!("push"))),
            ("$.body.a[7]", None),
            ("$.body.missing.deeper", None),
            ("$", Some(document.clone())),
        ] {
            let parsed = JsonQuery::parse(query).unwrap();
            assert_eq!(parsed.select(&document).cloned(), expected, "{query}");
            assert_eq!(parsed.as_str(), query);
            assert_eq!(parsed.to_string(), query);
        }
    }

    #[test]
    fn a_query_that_may_select_several_values_is_refused_where_it_does() {
        for (query, position) in [
            ("$.body.*", 6),
            ("$.body..id", 6),
            ("$.body.a[0:2]", 8),
            ("$.body.a[0,1]", 8),
            ("$.body.a[?@.x==1]", 8),
            ("$[*]", 1),
        ] {
            let error = JsonQuery::parse(query).unwrap_err();
            assert_eq!(error.position(), position, "{query}: {error}");
            assert_eq!(error.query(), query);
            assert!(error.message().starts_with("not singular"), "{error}");
        }
    }

    #[test]
    fn a_query_that_is_not_jsonpath_is_refused_with_the_parsers_position() {
        for query in ["", "body.a", "$.body.", "$.body[", "$.body['a]", "$.a b"] {
            let error = JsonQuery::parse(query).unwrap_err();
            assert!(error.position() <= query.len(), "{query}: {error}");
            assert!(!error.message().starts_with("not singular"), "{query}: {error}");
        }
        let error = JsonQuery::parse("$.body[").unwrap_err();
        assert_eq!(error.position(), 6, "{error}");
    }

    #[test]
    fn the_origin_is_the_body_or_the_text_of_headers_and_query() {
        let document = json!({"body": {"n": 1}, "headers": {"n": "1"}, "query": {"n": "1"}});
        let origin = |q: &str| {
            JsonQuery::parse(q)
                .unwrap()
                .select_with_origin(&document)
                .map(|(_, o)| o)
        };
        assert_eq!(origin("$.body.n"), Some(Origin::Body));
        assert_eq!(origin("$['body']['n']"), Some(Origin::Body));
        assert_eq!(origin("$.headers.n"), Some(Origin::Text));
        assert_eq!(origin("$.query.n"), Some(Origin::Text));
        assert_eq!(origin("$.query.absent"), None);
    }

    #[test]
    fn queries_compare_debug_and_serialize_as_written() {
        let a = JsonQuery::parse("$.body.a").unwrap();
        assert_eq!(a, JsonQuery::parse("$.body.a").unwrap());
        assert_ne!(a, JsonQuery::parse("$['body'].a").unwrap());
        assert_eq!(format!("{a:?}"), r#"JsonQuery("$.body.a")"#);
        assert_eq!(serde_json::to_value(&a).unwrap(), json!("$.body.a"));
        let back: JsonQuery = serde_json::from_value(json!("$.body.a")).unwrap();
        assert_eq!(back, a);
        let refused = serde_json::from_value::<JsonQuery>(json!("$..a")).unwrap_err();
        assert!(refused.to_string().contains("not singular"), "{refused}");
    }
}
