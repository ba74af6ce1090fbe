//! One file per sender's scheme: the check of a delivery's signature over
//! its raw body, and what the delivery says (its id, its event).

pub(crate) mod basic;
pub(crate) mod github;
pub(crate) mod gitlab;
pub(crate) mod hmac;
pub(crate) mod shopify;
pub(crate) mod slack;
pub(crate) mod standard;
pub(crate) mod stripe;
pub(crate) mod twilio;
