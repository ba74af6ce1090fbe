//! The server's inbox: `WEBHOOK_INBOX`, `WEBHOOK_INBOX_MAX_AGE` and
//! `WEBHOOK_INBOX_LIMIT`, and the dispatcher it runs.

use std::sync::Arc;
use std::time::Duration;

use process_webhook::*;

use crate::{BadSetting, bad_setting};

/// What `WEBHOOK_INBOX` asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum InboxMode {
    Off,
    On(InboxPolicy),
}

/// The inbox settings, read from the environment.
#[derive(Debug)]
pub(crate) struct InboxSettings {
    pub(crate) mode: InboxMode,
    pub(crate) max_age: Duration,
    pub(crate) limit: usize,
}

impl InboxSettings {
    /// `WEBHOOK_INBOX` (`off`, `fallback`, `always`; default `fallback`
    /// where the state is durable, `off` in memory), `WEBHOOK_INBOX_MAX_AGE`
    /// (`72h`), `WEBHOOK_INBOX_LIMIT` (100,000).
    pub(crate) fn from_env(durable: bool) -> Result<Self, BadSetting> {
        let set = [
            ("WEBHOOK_INBOX", std::env::var("WEBHOOK_INBOX").ok()),
            (
                "WEBHOOK_INBOX_MAX_AGE",
                std::env::var("WEBHOOK_INBOX_MAX_AGE").ok(),
            ),
            ("WEBHOOK_INBOX_LIMIT", std::env::var("WEBHOOK_INBOX_LIMIT").ok()),
        ];
        Self::read(durable, |name| {
            set.iter().find(|(n, _)| *n == name).and_then(|(_, v)| v.clone())
        })
    }

    pub(crate) fn read(durable: bool, var: impl Fn(&str) -> Option<String>) -> Result<Self, BadSetting> {
        let mode = match var("WEBHOOK_INBOX").as_deref().map(str::trim) {
            None | Some("") if durable => InboxMode::On(InboxPolicy::Fallback),
            None | Some("") => InboxMode::Off,
            Some("off") => InboxMode::Off,
            Some("fallback") => InboxMode::On(InboxPolicy::Fallback),
            Some("always") => InboxMode::On(InboxPolicy::Always),
            Some(other) => {
                return Err(BadSetting {
                    variable: "WEBHOOK_INBOX",
                    value: Some(other.to_owned()),
                    problem: "must be `off`, `fallback` or `always`".to_owned(),
                });
            }
        };
        let max_age = match var("WEBHOOK_INBOX_MAX_AGE") {
            Some(text) => duration(&text).ok_or_else(|| BadSetting {
                variable: "WEBHOOK_INBOX_MAX_AGE",
                value: Some(text.clone()),
                problem: "must be a whole number and a unit: `90s`, `30m`, `72h` or `7d`".to_owned(),
            })?,
            None => Dispatcher::DEFAULT_MAX_AGE,
        };
        let limit = match var("WEBHOOK_INBOX_LIMIT") {
            Some(text) => text
                .trim()
                .parse::<usize>()
                .map_err(|e| bad_setting("WEBHOOK_INBOX_LIMIT", Some(&text), &e))?,
            None => WebhookStarter::DEFAULT_INBOX_LIMIT,
        };
        Ok(Self { mode, max_age, limit })
    }

    /// `starter` with the inbox, and its dispatcher, as the settings say;
    /// `store` is the durable inbox, if there is one. The dispatcher is
    /// spawned by the caller once the banner is printed: a start it makes
    /// at once (one kept before a restart) prints its line after it.
    pub(crate) fn apply(
        &self,
        starter: WebhookStarter,
        store: Option<Arc<dyn Inbox>>,
        wakeup: Option<Arc<tokio::sync::Notify>>,
        kept_in: &str,
    ) -> (WebhookStarter, Option<Arc<dyn Inbox>>, Option<Dispatcher>) {
        let InboxMode::On(policy) = self.mode else {
            println!("inbox: off (set WEBHOOK_INBOX=fallback to keep starts while the engine is away)");
            return (starter, None, None);
        };
        let name = match policy {
            InboxPolicy::Always => "always",
            _ => "fallback",
        };
        let inbox: Arc<dyn Inbox> = match store {
            Some(store) => {
                println!("inbox: {name}, in {kept_in} (kept starts survive a restart)");
                store
            }
            None => {
                println!(
                    "inbox: {name}, in memory: kept starts do not survive a restart (WEBHOOK_DATA=:memory:)"
                );
                Arc::new(InMemoryInbox::new())
            }
        };
        let starter = starter
            .with_inbox(inbox.clone(), policy)
            .with_inbox_limit(self.limit);
        let dispatcher = starter.dispatcher().map(|dispatcher| {
            let dispatcher = dispatcher.with_max_age(self.max_age);
            match wakeup {
                Some(wakeup) => dispatcher.with_wakeup(wakeup),
                None => dispatcher,
            }
        });
        (starter, Some(inbox), dispatcher)
    }
}

/// Runs `dispatcher`, if there is one, until the server stops it.
pub(crate) fn spawn_dispatcher(dispatcher: Option<Dispatcher>) -> Dispatching {
    Dispatching(dispatcher.map(|dispatcher| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(async move {
            dispatcher
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        (stop, running)
    }))
}

/// A running dispatcher, if there is one.
pub(crate) struct Dispatching(Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>);

impl Dispatching {
    /// Stops the dispatcher: the round in flight ends (each of its starts
    /// started, rescheduled or dead), no next one begins.
    pub(crate) async fn stop(self) {
        if let Some((stop, running)) = self.0 {
            let _ = stop.send(());
            let _ = running.await;
        }
    }
}

/// A duration as `90s`, `30m`, `72h` or `7d`.
pub(crate) fn duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(durable: bool, pairs: &[(&str, &str)]) -> Result<InboxSettings, BadSetting> {
        InboxSettings::read(durable, |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_inbox_is_on_by_default_only_where_the_state_is_durable() {
        assert_eq!(
            read(true, &[]).unwrap().mode,
            InboxMode::On(InboxPolicy::Fallback)
        );
        assert_eq!(read(false, &[]).unwrap().mode, InboxMode::Off);
        let always = read(false, &[("WEBHOOK_INBOX", "always")]).unwrap();
        assert_eq!(always.mode, InboxMode::On(InboxPolicy::Always));
        assert_eq!(
            read(true, &[("WEBHOOK_INBOX", "off")]).unwrap().mode,
            InboxMode::Off
        );
        let defaults = read(true, &[]).unwrap();
        assert_eq!(
            (defaults.max_age, defaults.limit),
            (Duration::from_secs(72 * 3_600), 100_000)
        );
    }

    #[test]
    fn bad_inbox_settings_name_the_variable_and_what_it_takes() {
        let err = read(true, &[("WEBHOOK_INBOX", "sometimes")]).unwrap_err();
        assert_eq!(err.variable, "WEBHOOK_INBOX");
        assert!(err.problem.contains("`off`, `fallback` or `always`"));
        for bad in ["72", "h", "3x", "-1h", "99999999999999999999d"] {
            let err = read(true, &[("WEBHOOK_INBOX_MAX_AGE", bad)]).unwrap_err();
            assert_eq!(err.variable, "WEBHOOK_INBOX_MAX_AGE", "{bad}");
        }
        assert_eq!(
            read(true, &[("WEBHOOK_INBOX_LIMIT", "many")])
                .unwrap_err()
                .variable,
            "WEBHOOK_INBOX_LIMIT"
        );
        let set = read(
            true,
            &[("WEBHOOK_INBOX_MAX_AGE", "30m"), ("WEBHOOK_INBOX_LIMIT", "5")],
        )
        .unwrap();
        assert_eq!((set.max_age, set.limit), (Duration::from_secs(1_800), 5));
        assert_eq!(duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(duration("90s"), Some(Duration::from_secs(90)));
    }
}
