//! [`SourceScheme`]: how a sender signs (or authenticates) its deliveries,
//! with the settings of the schemes that have some ([`HmacScheme`],
//! [`PublicOrigin`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a source's sender authenticates its deliveries. Each is checked
/// over the raw body, before it is parsed, in constant time; where the
/// scheme signs a timestamp, it must be within the starter's signature
/// tolerance (5 minutes either way by default).
///
/// | scheme | the sender sends | signed content | delivery id | event |
/// |---|---|---|---|---|
/// | `github` | `X-Hub-Signature-256: sha256=<hex>` | body, HMAC-SHA256 | `X-GitHub-Delivery` | `X-GitHub-Event` |
/// | `stripe` | `Stripe-Signature: t=<unix>,v1=<hex>…` | `{t}.{body}`, HMAC-SHA256 | the body's `id` | the body's `type` |
/// | `slack` | `X-Slack-Signature: v0=<hex>`, `X-Slack-Request-Timestamp` | `v0:{timestamp}:{body}`, HMAC-SHA256 | the body's `event_id` | the body's `event.type` |
/// | `shopify` | `X-Shopify-Hmac-Sha256: <base64>` | body, HMAC-SHA256 | `X-Shopify-Webhook-Id` | `X-Shopify-Topic` |
/// | `twilio` | `X-Twilio-Signature: <base64>` | the public URL, then the form's parameters sorted by name, HMAC-SHA1 | `I-Twilio-Idempotency-Token` | — |
/// | `gitlab` | `X-Gitlab-Token: <secret>` | the secret itself | `X-Gitlab-Event-UUID` | `X-Gitlab-Event` |
/// | `standard-webhooks` | `webhook-id`, `webhook-timestamp`, `webhook-signature` | `{id}.{timestamp}.{body}`, HMAC-SHA256 | `webhook-id` | — |
/// | `hmac` | the header it names, with an optional prefix | body, or `{timestamp}.{body}` | the header it names | — |
/// | `basic` | `authorization: Basic …` | user and password | — | — |
///
/// `Display` and `FromStr` use the names in the first column, for the
/// schemes without settings (`twilio`, `hmac` and `basic` are built with
/// [`twilio`](Self::twilio), [`hmac`](Self::hmac) and [`basic`](Self::basic)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SchemeShape", into = "SchemeShape")]
#[non_exhaustive]
pub enum SourceScheme {
    /// GitHub's `X-Hub-Signature-256`. A `ping` delivery is answered `200`
    /// and starts nothing.
    Github,
    /// Stripe's `Stripe-Signature`.
    Stripe,
    /// Slack's `X-Slack-Signature`. A `url_verification` call is answered
    /// `200` with its `challenge` and starts nothing.
    Slack,
    /// Shopify's `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// Twilio's `X-Twilio-Signature`, over the URL Twilio called: the
    /// source's public origin followed by the path and query of the call.
    Twilio(PublicOrigin),
    /// GitLab's `X-Gitlab-Token`, the secret itself.
    Gitlab,
    /// The Standard Webhooks headers, as an environment's signing secrets
    /// are checked ([`SignatureVerifier`](crate::SignatureVerifier)).
    StandardWebhooks,
    /// A generic HMAC in a header the source names.
    Hmac(HmacScheme),
    /// `authorization: Basic …` with this user and the source's secret as
    /// the password, for senders that can only put credentials in the URL.
    Basic(String),
}

impl SourceScheme {
    /// `twilio`, for the public origin Twilio calls (e.g.
    /// `https://hooks.example.com`).
    pub fn twilio(public_origin: PublicOrigin) -> Self {
        Self::Twilio(public_origin)
    }

    /// `hmac`, with its settings.
    pub fn hmac(scheme: HmacScheme) -> Self {
        Self::Hmac(scheme)
    }

    /// `basic`, for the user the sender sends.
    pub fn basic(user: impl Into<String>) -> Self {
        Self::Basic(user.into())
    }

    /// Whether the sender may post its JSON delivery as a form whose one
    /// field `payload` holds it: GitHub's default content type
    /// (`application/x-www-form-urlencoded`), and Slack's interactive
    /// components and shortcuts.
    pub(crate) fn posts_json_in_form(&self) -> bool {
        matches!(self, Self::Github | Self::Slack)
    }

    /// The scheme's name (`github`, …, `standard-webhooks`, `hmac`, `basic`):
    /// a metrics label, and the `scheme` of a source's configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Stripe => "stripe",
            Self::Slack => "slack",
            Self::Shopify => "shopify",
            Self::Twilio(_) => "twilio",
            Self::Gitlab => "gitlab",
            Self::StandardWebhooks => "standard-webhooks",
            Self::Hmac(_) => "hmac",
            Self::Basic(_) => "basic",
        }
    }

    /// Whether the sender names an event for each delivery (so that a
    /// source may list the events that start its process).
    pub fn has_events(&self) -> bool {
        matches!(
            self,
            Self::Github | Self::Stripe | Self::Slack | Self::Shopify | Self::Gitlab
        )
    }
}

impl fmt::Display for SourceScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SourceScheme {
    type Err = InvalidScheme;

    /// The schemes without settings by name; `twilio`, `hmac` and `basic`
    /// need theirs, and are [`InvalidScheme::NeedsSettings`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "github" => Self::Github,
            "stripe" => Self::Stripe,
            "slack" => Self::Slack,
            "shopify" => Self::Shopify,
            "gitlab" => Self::Gitlab,
            "standard-webhooks" => Self::StandardWebhooks,
            "twilio" | "hmac" | "basic" => return Err(InvalidScheme::NeedsSettings { scheme: s.to_owned() }),
            _ => {
                return Err(InvalidScheme::Unknown {
                    scheme: s.chars().take(32).collect(),
                });
            }
        })
    }
}

/// The origin (`https://host[:port]`) a sender calls, as the public sees it
/// (behind a proxy, not the address the server listens on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PublicOrigin(String);

impl PublicOrigin {
    /// The origin, e.g. `https://hooks.example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PublicOrigin {
    type Err = InvalidScheme;

    /// `http://` or `https://` and a host (and port), without a path,
    /// query or fragment; one trailing `/` is dropped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let origin = s.strip_suffix('/').unwrap_or(s);
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or_default();
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@'));
        if ok {
            Ok(Self(origin.to_owned()))
        } else {
            Err(InvalidScheme::PublicOrigin)
        }
    }
}

impl<'de> Deserialize<'de> for PublicOrigin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The hash of an [`HmacScheme`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HmacAlgorithm {
    /// HMAC-SHA256 (the default).
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
    /// HMAC-SHA1, for senders that still use it.
    Sha1,
}

/// How an [`HmacScheme`]'s signature is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HmacEncoding {
    /// Hexadecimal digits, either case (the default).
    #[default]
    Hex,
    /// Standard base64, with padding.
    Base64,
}

/// The settings of a generic `hmac` source: the header with the
/// signature (and a prefix before it, such as `sha256=`), the hash, the
/// encoding, and optionally a header with a signed timestamp (the signed
/// content is then `{timestamp}.{body}`, else the body alone) and one with
/// the delivery id.
///
/// # Example
///
/// ```
/// use process_webhook::{HmacAlgorithm, HmacEncoding, HmacScheme};
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let scheme = HmacScheme::new("X-Signature")?
///     .with_prefix("sha256=")
///     .with_algorithm(HmacAlgorithm::Sha256)
///     .with_encoding(HmacEncoding::Hex)
///     .with_timestamp_header("X-Timestamp")?
///     .with_delivery_header("X-Delivery")?;
/// assert_eq!(scheme.header(), "x-signature");
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HmacScheme {
    header: String,
    prefix: String,
    algorithm: HmacAlgorithm,
    encoding: HmacEncoding,
    timestamp_header: Option<String>,
    delivery_header: Option<String>,
}

impl HmacScheme {
    /// A scheme with the signature in `header` (any case), SHA-256, hex, no
    /// prefix, no timestamp, no delivery id.
    ///
    /// # Errors
    ///
    /// [`InvalidScheme::HeaderName`] for a name that is not an HTTP token.
    pub fn new(header: &str) -> Result<Self, InvalidScheme> {
        Ok(Self {
            header: header_name(header)?,
            prefix: String::new(),
            algorithm: HmacAlgorithm::default(),
            encoding: HmacEncoding::default(),
            timestamp_header: None,
            delivery_header: None,
        })
    }

    /// Sets the text before the signature in its header (e.g. `sha256=`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the hash.
    pub fn with_algorithm(mut self, algorithm: HmacAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Sets the encoding.
    pub fn with_encoding(mut self, encoding: HmacEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Sets the header with a signed Unix timestamp (seconds).
    ///
    /// # Errors
    ///
    /// [`InvalidScheme::HeaderName`] for a name that is not an HTTP token.
    pub fn with_timestamp_header(mut self, header: &str) -> Result<Self, InvalidScheme> {
        self.timestamp_header = Some(header_name(header)?);
        Ok(self)
    }

    /// Sets the header with the delivery id (the idempotency key).
    ///
    /// # Errors
    ///
    /// [`InvalidScheme::HeaderName`] for a name that is not an HTTP token.
    pub fn with_delivery_header(mut self, header: &str) -> Result<Self, InvalidScheme> {
        self.delivery_header = Some(header_name(header)?);
        Ok(self)
    }

    /// The signature's header, in lower case.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The text before the signature.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash.
    pub fn algorithm(&self) -> HmacAlgorithm {
        self.algorithm
    }

    /// The encoding.
    pub fn encoding(&self) -> HmacEncoding {
        self.encoding
    }

    /// The timestamp's header, in lower case, if any.
    pub fn timestamp_header(&self) -> Option<&str> {
        self.timestamp_header.as_deref()
    }

    /// The delivery id's header, in lower case, if any.
    pub fn delivery_header(&self) -> Option<&str> {
        self.delivery_header.as_deref()
    }
}

/// A header name (an RFC 9110 token), in lower case.
fn header_name(name: &str) -> Result<String, InvalidScheme> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || name.len() > 128 || !name.bytes().all(token) {
        return Err(InvalidScheme::HeaderName {
            name: name.chars().take(32).collect(),
        });
    }
    Ok(name.to_ascii_lowercase())
}

/// A scheme or its settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidScheme {
    /// No scheme has this name.
    #[error(
        "unknown scheme `{scheme}`: expected github, stripe, slack, shopify, twilio, gitlab, \
         standard-webhooks, hmac or basic"
    )]
    Unknown {
        /// The name (its first 32 characters).
        scheme: String,
    },
    /// The scheme needs settings that a name alone does not give.
    #[error("the `{scheme}` scheme needs its settings (twilio: public_origin; hmac: header; basic: user)")]
    NeedsSettings {
        /// The scheme's name.
        scheme: String,
    },
    /// A header name is not an HTTP token.
    #[error("`{name}` is not a header name")]
    HeaderName {
        /// The name (its first 32 characters).
        name: String,
    },
    /// A public origin is not `http(s)://host[:port]`.
    #[error("a public origin must be `https://host` or `http://host[:port]`, without a path")]
    PublicOrigin,
}

/// The serde shape of a scheme: its name and its settings side by side,
/// as a source's configuration writes them.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SchemeShape {
    scheme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    algorithm: Option<HmacAlgorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoding: Option<HmacEncoding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_origin: Option<PublicOrigin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
}

impl TryFrom<SchemeShape> for SourceScheme {
    type Error = InvalidScheme;

    fn try_from(shape: SchemeShape) -> Result<Self, Self::Error> {
        let needs = || InvalidScheme::NeedsSettings {
            scheme: shape.scheme.clone(),
        };
        match shape.scheme.as_str() {
            "twilio" => Ok(Self::Twilio(shape.public_origin.clone().ok_or_else(needs)?)),
            "basic" => Ok(Self::Basic(shape.user.clone().ok_or_else(needs)?)),
            "hmac" => {
                let mut scheme = HmacScheme::new(shape.header.as_deref().ok_or_else(needs)?)?
                    .with_prefix(shape.prefix.unwrap_or_default())
                    .with_algorithm(shape.algorithm.unwrap_or_default())
                    .with_encoding(shape.encoding.unwrap_or_default());
                if let Some(header) = &shape.timestamp_header {
                    scheme = scheme.with_timestamp_header(header)?;
                }
                if let Some(header) = &shape.delivery_header {
                    scheme = scheme.with_delivery_header(header)?;
                }
                Ok(Self::Hmac(scheme))
            }
            name => name.parse(),
        }
    }
}

impl From<SourceScheme> for SchemeShape {
    fn from(scheme: SourceScheme) -> Self {
        let mut shape = Self {
            scheme: scheme.name().to_owned(),
            ..Self::default()
        };
        match scheme {
            SourceScheme::Twilio(origin) => shape.public_origin = Some(origin),
            SourceScheme::Basic(user) => shape.user = Some(user),
            SourceScheme::Hmac(hmac) => {
                shape.header = Some(hmac.header);
                shape.prefix = Some(hmac.prefix);
                shape.algorithm = Some(hmac.algorithm);
                shape.encoding = Some(hmac.encoding);
                shape.timestamp_header = hmac.timestamp_header;
                shape.delivery_header = hmac.delivery_header;
            }
            _ => {}
        }
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_scheme_reads_back_what_it_writes() {
        let schemes = [
            SourceScheme::Github,
            SourceScheme::Stripe,
            SourceScheme::Slack,
            SourceScheme::Shopify,
            SourceScheme::twilio("https://hooks.example.com".parse().unwrap()),
            SourceScheme::Gitlab,
            SourceScheme::StandardWebhooks,
            SourceScheme::hmac(
                HmacScheme::new("X-Sig")
                    .unwrap()
                    .with_prefix("sha256=")
                    .with_algorithm(HmacAlgorithm::Sha512)
                    .with_encoding(HmacEncoding::Base64)
                    .with_timestamp_header("X-Ts")
                    .unwrap()
                    .with_delivery_header("X-Id")
                    .unwrap(),
            ),
            SourceScheme::basic("zapier"),
        ];
        for scheme in schemes {
            let json = serde_json::to_value(&scheme).unwrap();
            assert_eq!(json["scheme"], scheme.name());
            assert_eq!(serde_json::from_value::<SourceScheme>(json).unwrap(), scheme);
        }
    }

    #[test]
    fn a_scheme_displays_as_its_name() {
        assert_eq!(SourceScheme::Github.to_string(), "github");
        assert_eq!(SourceScheme::StandardWebhooks.to_string(), "standard-webhooks");
        assert_eq!(SourceScheme::basic("u").to_string(), "basic");
    }

    #[test]
    fn names_parse_and_settings_are_required() {
        assert_eq!("github".parse(), Ok(SourceScheme::Github));
        assert_eq!("standard-webhooks".parse(), Ok(SourceScheme::StandardWebhooks));
        assert!(matches!(
            "hmac".parse::<SourceScheme>(),
            Err(InvalidScheme::NeedsSettings { .. })
        ));
        assert!(matches!(
            "GitHub".parse::<SourceScheme>(),
            Err(InvalidScheme::Unknown { .. })
        ));
        let no_header = serde_json::from_value::<SourceScheme>(json!({"scheme": "hmac"}));
        assert!(no_header.unwrap_err().to_string().contains("hmac: header"));
        let typo = serde_json::from_value::<SourceScheme>(json!({"scheme": "github", "heder": "x"}));
        assert!(typo.unwrap_err().to_string().contains("heder"));
        let hmac: SourceScheme =
            serde_json::from_value(json!({"scheme": "hmac", "header": "X-Sig"})).unwrap();
        let SourceScheme::Hmac(hmac) = hmac else {
            panic!("hmac")
        };
        assert_eq!(
            (hmac.header(), hmac.prefix(), hmac.algorithm(), hmac.encoding()),
            ("x-sig", "", HmacAlgorithm::Sha256, HmacEncoding::Hex)
        );
        assert_eq!((hmac.timestamp_header(), hmac.delivery_header()), (None, None));
    }

    #[test]
    fn only_schemes_whose_senders_name_events_have_events() {
        assert!(SourceScheme::Github.has_events() && SourceScheme::Gitlab.has_events());
        assert!(!SourceScheme::StandardWebhooks.has_events() && !SourceScheme::basic("u").has_events());
    }

    #[test]
    fn a_public_origin_is_a_scheme_and_a_host() {
        assert_eq!(
            "https://hooks.example.com/"
                .parse::<PublicOrigin>()
                .unwrap()
                .as_str(),
            "https://hooks.example.com"
        );
        assert!("http://127.0.0.1:8080".parse::<PublicOrigin>().is_ok());
        for bad in [
            "hooks.example.com",
            "https://",
            "https://a/b",
            "ftp://a",
            "https://a?b",
            "https://u@a",
            "https://a b",
        ] {
            assert_eq!(
                bad.parse::<PublicOrigin>(),
                Err(InvalidScheme::PublicOrigin),
                "{bad}"
            );
        }
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(HmacScheme::new("X-Signature").is_ok());
        assert!(HmacScheme::new(&"x".repeat(128)).is_ok());
        assert!(matches!(
            HmacScheme::new(&"x".repeat(129)),
            Err(InvalidScheme::HeaderName { .. })
        ));
        for bad in ["", "X Signature", "X:Sig", "é"] {
            assert!(
                matches!(HmacScheme::new(bad), Err(InvalidScheme::HeaderName { .. })),
                "{bad}"
            );
        }
    }
}
