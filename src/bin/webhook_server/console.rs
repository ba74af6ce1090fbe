//! The server's delivery log and console: `WEBHOOK_KEEP_PAYLOADS`,
//! `WEBHOOK_LOG_RETENTION`, `WEBHOOK_ADMIN_ADDR` and `WEBHOOK_ADMIN_TOKEN`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use process_webhook::*;

use crate::inbox::duration;
use crate::{BadSetting, listen};

/// The delivery log and console settings, read from the environment.
pub(crate) struct ConsoleSettings {
    pub(crate) payloads: KeepPayloads,
    pub(crate) retention: Duration,
    pub(crate) admin: Option<(String, AdminToken)>,
}

impl ConsoleSettings {
    pub(crate) fn from_env() -> Result<Self, BadSetting> {
        let set = [
            (
                "WEBHOOK_KEEP_PAYLOADS",
                std::env::var("WEBHOOK_KEEP_PAYLOADS").ok(),
            ),
            (
                "WEBHOOK_LOG_RETENTION",
                std::env::var("WEBHOOK_LOG_RETENTION").ok(),
            ),
            ("WEBHOOK_ADMIN_ADDR", std::env::var("WEBHOOK_ADMIN_ADDR").ok()),
            ("WEBHOOK_ADMIN_TOKEN", std::env::var("WEBHOOK_ADMIN_TOKEN").ok()),
        ];
        Self::read(|name| set.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.clone()))
    }

    pub(crate) fn read(var: impl Fn(&str) -> Option<String>) -> Result<Self, BadSetting> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let payloads = match set("WEBHOOK_KEEP_PAYLOADS") {
            Some(text) => text.trim().parse().map_err(|_| BadSetting {
                variable: "WEBHOOK_KEEP_PAYLOADS",
                value: Some(text.clone()),
                problem: "must be `failed`, `all` or `none`".to_owned(),
            })?,
            None => KeepPayloads::Failed,
        };
        let retention = match set("WEBHOOK_LOG_RETENTION") {
            Some(text) => duration(&text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| BadSetting {
                    variable: "WEBHOOK_LOG_RETENTION",
                    value: Some(text.clone()),
                    problem: "must be a whole number and a unit: `90s`, `30m`, `72h` or `7d`".to_owned(),
                })?,
            None => DEFAULT_RETENTION,
        };
        let admin = match (set("WEBHOOK_ADMIN_ADDR"), set("WEBHOOK_ADMIN_TOKEN")) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(BadSetting {
                    variable: "WEBHOOK_ADMIN_TOKEN",
                    value: None,
                    problem:
                        "not set: WEBHOOK_ADMIN_ADDR serves the admin API and console only to the bearer \
                              of this token (at least 32 characters, e.g. from `openssl rand -base64 32`)"
                            .to_owned(),
                });
            }
            (Some(addr), Some(token)) => {
                let token = token.trim().parse::<AdminToken>().map_err(|_| BadSetting {
                    variable: "WEBHOOK_ADMIN_TOKEN",
                    // Never echoed: it is a secret.
                    value: None,
                    problem: "must be at least 32 characters of visible ASCII (e.g. from `openssl rand -base64 32`)"
                        .to_owned(),
                })?;
                Some((addr.trim().to_owned(), token))
            }
        };
        Ok(Self {
            payloads,
            retention,
            admin,
        })
    }

    /// The delivery log (`durable`, or in memory), its writer spawned and,
    /// for a durable one, its purge; `starter` logs into it.
    pub(crate) fn apply(
        &self,
        starter: WebhookStarter,
        durable: Option<Arc<dyn DeliveryLog>>,
        kept_in: &str,
    ) -> (WebhookStarter, Arc<dyn DeliveryLog>, tokio::task::JoinHandle<()>) {
        let log: Arc<dyn DeliveryLog> = match durable {
            Some(log) => {
                println!(
                    "delivery log: in {kept_in}, kept {} days",
                    self.retention.as_secs().div_ceil(86_400)
                );
                let purged = log.clone();
                let retention = self.retention;
                tokio::spawn(async move { purge(purged, retention).await });
                log
            }
            None => {
                println!(
                    "delivery log: in memory, the newest {} deliveries",
                    InMemoryDeliveryLog::DEFAULT_CAPACITY
                );
                Arc::new(InMemoryDeliveryLog::new())
            }
        };
        let (sink, writer) = LogWriter::new(log.clone(), LogWriter::DEFAULT_CAPACITY, self.payloads);
        let writing = tokio::spawn(writer.run());
        (starter.with_delivery_log(sink), log, writing)
    }

    /// Serves the admin API and console on `WEBHOOK_ADMIN_ADDR`, if set.
    pub(crate) async fn serve(
        &self,
        log: Arc<dyn DeliveryLog>,
        inbox: Option<Arc<dyn Inbox>>,
    ) -> Result<(), BadSetting> {
        let Some((addr, token)) = &self.admin else {
            println!("console:         off (set WEBHOOK_ADMIN_ADDR and WEBHOOK_ADMIN_TOKEN)");
            return Ok(());
        };
        let listener = listen("WEBHOOK_ADMIN_ADDR", addr).await?;
        let at = listener.local_addr().map_err(|e| BadSetting {
            variable: "WEBHOOK_ADMIN_ADDR",
            value: Some(addr.clone()),
            problem: e.to_string(),
        })?;
        let mut admin = Admin::new(token.clone(), log);
        if let Some(inbox) = inbox {
            admin = admin.with_inbox(inbox);
        }
        println!("console:         http://{at}/ (admin API at http://{at}/api/v1/deliveries)");
        tokio::spawn(process_webhook::serve(
            listener,
            admin.router(),
            ServeOptions::default(),
            std::future::pending(),
        ));
        Ok(())
    }
}

/// The default retention of the delivery log in PostgreSQL: 7 days.
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Removes records older than `retention` every ten minutes, 1,000 at a
/// time (a short transaction each).
async fn purge(log: Arc<dyn DeliveryLog>, retention: Duration) {
    loop {
        let before = SystemTime::now() - retention;
        loop {
            match log.purge(before, 1_000).await {
                Ok(1_000) => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(target: "process_webhook", %error, "the delivery log could not purge old records");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(600)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<ConsoleSettings, BadSetting> {
        ConsoleSettings::read(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_console_is_off_unless_an_address_and_a_long_token_are_set() {
        let defaults = read(&[]).unwrap();
        assert!(defaults.admin.is_none());
        assert_eq!(defaults.payloads, KeepPayloads::Failed);
        assert_eq!(defaults.retention, Duration::from_secs(7 * 86_400));
        let err = read(&[("WEBHOOK_ADMIN_ADDR", "127.0.0.1:8081")]).err().unwrap();
        assert_eq!(err.variable, "WEBHOOK_ADMIN_TOKEN");
        let short = "a-short-admin-token";
        let err = read(&[
            ("WEBHOOK_ADMIN_ADDR", "127.0.0.1:8081"),
            ("WEBHOOK_ADMIN_TOKEN", short),
        ])
        .err()
        .unwrap();
        assert_eq!(
            (err.variable, err.value),
            ("WEBHOOK_ADMIN_TOKEN", None),
            "the token is never echoed"
        );
        let on = read(&[
            ("WEBHOOK_ADMIN_ADDR", "127.0.0.1:8081"),
            ("WEBHOOK_ADMIN_TOKEN", "an-admin-token-of-at-least-32-characters"),
            ("WEBHOOK_KEEP_PAYLOADS", "all"),
            ("WEBHOOK_LOG_RETENTION", "30d"),
        ])
        .unwrap();
        assert_eq!(on.admin.map(|(addr, _)| addr).as_deref(), Some("127.0.0.1:8081"));
        assert_eq!(
            (on.payloads, on.retention),
            (KeepPayloads::All, Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            read(&[("WEBHOOK_KEEP_PAYLOADS", "some")]).err().unwrap().variable,
            "WEBHOOK_KEEP_PAYLOADS"
        );
        assert_eq!(
            read(&[("WEBHOOK_LOG_RETENTION", "0d")]).err().unwrap().variable,
            "WEBHOOK_LOG_RETENTION"
        );
    }
}
