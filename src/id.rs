//! Identifiers: one newtype per kind of id, so that a process UUID can never be
//! passed where an environment id is expected.

use std::fmt;
use std::str::FromStr;

use smol_str::SmolStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The UUID of a process model, as it appears in its webhook URL
/// (`…/webhook/send?uid={process_uuid}`).
///
/// Parsing accepts any UUID version in the forms the `uuid` crate reads
/// (hyphenated, simple, braced or URN), upper or lower case; `Display` and
/// serde always use the lower-case hyphenated form, so that
/// `s.parse::<ProcessUuid>()?.to_string()` is the canonical spelling.
///
/// # Example
///
/// ```
/// use process_webhook::ProcessUuid;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let uuid: ProcessUuid = "DD9759E0-CC94-11ED-938F-13CF60270555".parse()?;
/// assert_eq!(uuid.to_string(), "dd9759e0-cc94-11ed-938f-13cf60270555");
/// # Ok(())
/// # }
/// # example().unwrap();
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProcessUuid(Uuid);

impl ProcessUuid {
    /// The UUID inside.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for ProcessUuid {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl From<ProcessUuid> for Uuid {
    fn from(uuid: ProcessUuid) -> Self {
        uuid.0
    }
}

impl FromStr for ProcessUuid {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self)
    }
}

impl fmt::Display for ProcessUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for ProcessUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProcessUuid({})", self.0.hyphenated())
    }
}

/// The id of one deployment of a process version to an environment.
///
/// `Display`, `FromStr` and serde use the lower-case hyphenated UUID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeploymentId(Uuid);

impl DeploymentId {
    /// A fresh random (version 4) id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for DeploymentId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl FromStr for DeploymentId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self)
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeploymentId({})", self.0.hyphenated())
    }
}

/// The id of one delivery a starter kept in its inbox to start later: the
/// `deliveryId` of a queued answer.
///
/// `Display`, `FromStr` and serde use the lower-case hyphenated UUID.
///
/// ```
/// use process_webhook::DeliveryId;
///
/// let id = DeliveryId::new_random();
/// assert_eq!(id.to_string().parse::<DeliveryId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeliveryId(Uuid);

impl DeliveryId {
    /// A fresh random (version 4) id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl From<Uuid> for DeliveryId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl FromStr for DeliveryId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s).map(Self)
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryId({})", self.0.hyphenated())
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `Display`, `FromStr` (which cannot fail), `as_str()` and serde (a plain
        /// JSON string) all use the same text. A clone never allocates: text
        /// of up to 23 bytes is kept inline (a clone copies it, and writes
        /// nothing another thread reads), longer text is shared.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(SmolStr);

        impl $name {
            /// An id with this text.
            pub fn new(id: impl Into<String>) -> Self {
                Self(SmolStr::from(id.into()))
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), &*self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::convert::Infallible;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self(SmolStr::new(s)))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(SmolStr::new(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(SmolStr::from(s))
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from)
            }
        }
    };
}

string_id! {
    /// The id of an organization, the owner of process models and environments.
    ///
    /// ```
    /// use process_webhook::OrganizationId;
    /// assert_eq!(OrganizationId::new("acme").as_str(), "acme");
    /// ```
    OrganizationId
}

string_id! {
    /// The id of an environment of an organization, such as `production`.
    ///
    /// Environment ids need not be unique across organizations: a start always
    /// checks that the process belongs to the token's organization.
    ///
    /// ```
    /// use process_webhook::EnvironmentId;
    /// assert_eq!(EnvironmentId::new("production").to_string(), "production");
    /// ```
    EnvironmentId
}

string_id! {
    /// The id the engine gave a started process instance.
    ///
    /// ```
    /// use process_webhook::InstanceId;
    /// assert_eq!(InstanceId::new("8f1c").as_str(), "8f1c");
    /// ```
    InstanceId
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn process_uuid_display_parse_and_serde_agree(bytes in any::<[u8; 16]>()) {
            let uuid = ProcessUuid::from(Uuid::from_bytes(bytes));
            prop_assert_eq!(uuid.as_uuid(), &Uuid::from_bytes(bytes));
            prop_assert_eq!(Uuid::from(uuid), Uuid::from_bytes(bytes));
            let text = uuid.to_string();
            prop_assert_eq!(text.parse::<ProcessUuid>().unwrap(), uuid);
            prop_assert_eq!(text.to_uppercase().parse::<ProcessUuid>().unwrap(), uuid);
            let json = serde_json::to_string(&uuid).unwrap();
            prop_assert_eq!(&json, &format!("\"{text}\""));
            prop_assert_eq!(serde_json::from_str::<ProcessUuid>(&json).unwrap(), uuid);
        }

        #[test]
        fn deployment_id_display_parse_and_serde_agree(bytes in any::<[u8; 16]>()) {
            let id = DeploymentId::from(Uuid::from_bytes(bytes));
            prop_assert_eq!(id.as_uuid(), &Uuid::from_bytes(bytes));
            prop_assert_eq!(id.to_string().parse::<DeploymentId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<DeploymentId>(&json).unwrap(), id);
        }

        #[test]
        fn string_ids_display_parse_and_serde_agree(text in ".*") {
            let env: EnvironmentId = text.parse().unwrap();
            prop_assert_eq!(env.to_string(), text.clone());
            prop_assert_eq!(env.as_str(), text.as_str());
            let json = serde_json::to_string(&env).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&text).unwrap());
            prop_assert_eq!(serde_json::from_str::<EnvironmentId>(&json).unwrap(), env);
            let org = OrganizationId::new(text.clone());
            prop_assert_eq!(serde_json::from_str::<OrganizationId>(&serde_json::to_string(&org).unwrap()).unwrap(), org);
            let inst = InstanceId::new(text.clone());
            prop_assert_eq!(inst.to_string().parse::<InstanceId>().unwrap(), inst);
        }
    }

    #[test]
    fn process_uuid_rejects_text_that_is_not_a_uuid() {
        assert!("not-a-uuid".parse::<ProcessUuid>().is_err());
        assert!("".parse::<ProcessUuid>().is_err());
        assert!(
            "dd9759e0-cc94-11ed-938f-13cf6027055"
                .parse::<ProcessUuid>()
                .is_err()
        );
    }
}
