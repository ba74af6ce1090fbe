//! The webhook senders' own libraries, which sign the deliveries the
//! tests send: npm `@octokit/webhooks-methods`, `stripe`, `twilio`,
//! `standardwebhooks` and `@octokit/webhooks-examples` in `tests/senders`
//! (`SENDER_LIBRARIES`), PyPI `slack_sdk` in the Python of `SLACK_PYTHON`;
//! `scripts/test` installs them, pinned, and sets both.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::server_setting;

/// The senders' libraries.
pub struct Senders {
    pub dir: PathBuf,
    python: String,
}

impl Senders {
    /// The libraries, or `None` (with a printed line) where they are not
    /// installed, outside CI.
    pub fn find() -> Option<Self> {
        let dir = server_setting(
            "SENDER_LIBRARIES",
            "SENDER_LIBRARIES=tests/senders, with npm ci run there",
        )?;
        let python = server_setting(
            "SLACK_PYTHON",
            "SLACK_PYTHON=target/tools/senders-venv/bin/python",
        )?;
        Some(Self {
            dir: PathBuf::from(dir),
            python,
        })
    }

    /// The headers the sender's library sends for `request` (see `sign.mjs`).
    pub fn sign(&self, request: Value) -> Vec<(String, String)> {
        let output = Command::new("node")
            .arg(self.dir.join("sign.mjs"))
            .arg(request.to_string())
            .output()
            .expect("node runs");
        assert!(
            output.status.success(),
            "sign.mjs: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        headers_of(&output.stdout)
    }

    /// The headers of Slack's SDK for `body` at `timestamp`.
    pub fn slack(&self, secret: &str, timestamp: i64, body: &str) -> Vec<(String, String)> {
        use std::io::Write as _;
        let mut child = Command::new(&self.python)
            .arg(self.dir.join("slack_sign.py"))
            .args([secret, &timestamp.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python runs");
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "slack_sign.py failed");
        headers_of(&output.stdout)
    }

    /// The first of `@octokit/webhooks-examples`' payloads of `event`.
    pub fn github_example(&self, event: &str) -> String {
        let output = Command::new("node")
            .arg(self.dir.join("sign.mjs"))
            .args(["example", event])
            .output()
            .expect("node runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Senders {
    /// Every payload of `@octokit/webhooks-examples` (about 330, of 58
    /// events), each as `{event, action, body, signature, form,
    /// formSignature}`: the body as sent, signed with `secret` by
    /// `@octokit/webhooks-methods`, and the form GitHub posts by default
    /// (`payload=` the body) signed the same way.
    pub fn github_examples(&self, secret: &str) -> Vec<Value> {
        let output = Command::new("node")
            .arg(self.dir.join("sign.mjs"))
            .args(["examples", secret])
            .output()
            .expect("node runs");
        assert!(output.status.success());
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Senders {
    /// The `multipart/form-data` body (and its `Content-Type`) that fetch,
    /// Node's own `FormData` as browsers send it, makes of text `fields`
    /// and `files` (name, file name, content).
    pub fn multipart(&self, fields: &[(&str, &str)], files: &[(&str, &str, &str)]) -> (String, Vec<u8>) {
        use base64::Engine as _;
        let request = serde_json::json!({"fields": fields, "files": files});
        let output = Command::new("node")
            .arg(self.dir.join("sign.mjs"))
            .args(["multipart", &request.to_string()])
            .output()
            .expect("node runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let made: Value = serde_json::from_slice(&output.stdout).unwrap();
        let body = base64::engine::general_purpose::STANDARD
            .decode(made["body"].as_str().unwrap())
            .unwrap();
        (made["contentType"].as_str().unwrap().to_owned(), body)
    }
}

fn headers_of(json: &[u8]) -> Vec<(String, String)> {
    let headers: serde_json::Map<String, Value> = serde_json::from_slice(json).unwrap();
    headers
        .into_iter()
        .map(|(name, value)| (name, value.as_str().unwrap().to_owned()))
        .collect()
}
