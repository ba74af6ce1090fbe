//! The file as the server reads it: tables it takes and tables it refuses, by line and key.

use super::*;
use process_webhook::*;
use serde_json::Value;

const ORDERS: &str = "dd9759e0-cc94-11ed-938f-13cf60270555";

/// A process in production whose form names no field (so that it
/// takes any mapped variable).
fn served() -> Vec<Served> {
    served_with(StartForm::default())
}

fn served_with(form: StartForm) -> Vec<Served> {
    let production = Environment::new(EnvironmentId::new("production"), OrganizationId::new("acme"));
    vec![Served {
        process: ORDERS.parse().unwrap(),
        environment: production,
        form,
    }]
}

#[test]
fn a_map_key_that_is_no_field_of_the_form_is_refused_with_the_fields_it_has() {
    let form = StartForm::new([
        FieldSpec::mandatory("repoId", FieldKind::Text),
        FieldSpec::optional("branch", FieldKind::Text),
    ]);
    let text = |key: &str| {
        format!(
            "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
             scheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n\n[source.map]\n\
             branch = \"$.body.ref\"\n{key} = \"$.body.repository.id\"\n"
        )
    };
    let error = parse_sources("sources.toml", &text("repoIdd"), &served_with(form.clone()), env)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "sources.toml:10:11: map.repoIdd: `repoIdd` is no field of the start form of process \
             {ORDERS} in `production` (its fields: repoId, branch)"
        )
    );
    let sources = parse_sources("sources.toml", &text("repoId"), &served_with(form), env).unwrap();
    assert_eq!(sources[0].mapping().unwrap().fields().count(), 2);
}

#[test]
fn an_unknown_key_names_the_closest_known_one() {
    let table = |key: &str| {
        format!(
            "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
             scheme = \"github\"\n{key} = \"GITHUB_SECRET\"\n"
        )
    };
    assert_eq!(
        parse(&table("secret_evn")).unwrap_err(),
        "sources.toml:6:1: unknown key 'secret_evn' (did you mean 'secret_env'?)"
    );
    // Further from a long key, in proportion: three edits from the 16
    // characters of `timestamp_header`.
    assert_eq!(
        parse(&table("timestamp_hdr")).unwrap_err(),
        "sources.toml:6:1: unknown key 'timestamp_hdr' (did you mean 'timestamp_header'?)"
    );
    let far = parse(&table("colour")).unwrap_err();
    assert!(
        far.starts_with("sources.toml:6:1: unknown key 'colour' (the keys here: id, process, environment,"),
        "{far}"
    );
}

#[test]
fn a_process_served_to_an_engine_by_key_needs_its_definition_key() {
    let without = OWN.replace("definition_key = \"refund\"\n", "");
    assert_ne!(without, OWN, "the fixture names a definition key");
    let error = parse_config(
        "own.toml",
        &without,
        &served(),
        Some("Temporal (TEMPORAL_URL)"),
        own_env,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(
            "definition_key: process `Refund` (1b4e28ba-2fa1-11d2-883f-0016d3cca427) has no definition_key: \
             Temporal (TEMPORAL_URL) starts the process definition (workflow type) it names"
        ),
        "{error}"
    );
    // The in-memory engine needs none; with the key, any engine takes it.
    assert!(parse_config("own.toml", &without, &served(), None, own_env).is_ok());
    let keyed = OWN.replace(
        "name = \"Exchange\"\n",
        "name = \"Exchange\"\ndefinition_key = \"exchange\"\n",
    );
    assert!(
        parse_config(
            "own.toml",
            &keyed,
            &served(),
            Some("Temporal (TEMPORAL_URL)"),
            own_env
        )
        .is_ok()
    );
}

fn env(name: &str) -> Option<String> {
    matches!(name, "GITHUB_SECRET" | "OLD_SECRET").then(|| format!("{name}-value"))
}

fn parse(text: &str) -> Result<Vec<WebhookSource>, String> {
    parse_sources("sources.toml", text, &served(), env).map_err(|e| e.to_string())
}

#[test]
fn a_table_becomes_a_source_with_its_secrets_from_the_environment() {
    let sources = parse(&format!(
        "[[source]]\nid = \"github\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
         scheme = \"github\"\nsecret_env = [\"GITHUB_SECRET\", \"OLD_SECRET\"]\nevents = [\"push\"]\n\n\
         [[source]]\nid = \"acme\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
         scheme = \"hmac\"\nheader = \"X-Sig\"\nprefix = \"sha256=\"\nalgorithm = \"sha512\"\n\
         encoding = \"base64\"\nsecret_env = \"GITHUB_SECRET\"\n"
    ))
    .unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0].secrets().len(), 2);
    assert_eq!(sources[0].secrets()[1].expose_secret(), b"OLD_SECRET-value");
    assert_eq!(sources[0].events(), Some(&["push".to_owned()][..]));
    assert_eq!(sources[1].scheme().name(), "hmac");
    assert_eq!(parse("").unwrap().len(), 0);
}

#[test]
fn a_table_it_cannot_use_is_named_by_file_line_and_key() {
    let table = |body: &str| format!("# sources\n[[source]]\n{body}");
    let cases = [
        (
            table(&format!(
                "id = \"g h\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n"
            )),
            "sources.toml:3:6: id: a source id must be",
        ),
        (
            table(&format!(
                "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"gitbub\"\nsecret_env = \"GITHUB_SECRET\"\n"
            )),
            "sources.toml:6:10: scheme: unknown scheme `gitbub`",
        ),
        (
            table(&format!(
                "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"staging\"\nscheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n"
            )),
            "sources.toml:5:15: environment: process dd9759e0-cc94-11ed-938f-13cf60270555 is not deployed to environment `staging`",
        ),
        (
            table(&format!(
                "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"github\"\nsecret_env = \"NOPE\"\n"
            )),
            "sources.toml:7:14: secret_env: the environment variable NOPE is not set",
        ),
        (
            table(&format!(
                "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"hmac\"\nsecret_env = \"GITHUB_SECRET\"\n"
            )),
            "sources.toml:6:10: scheme: the `hmac` scheme needs its settings",
        ),
        (
            table(&format!(
                "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"basic\"\nuser = \"u\"\nsecret_env = \"GITHUB_SECRET\"\nevents = [\"push\"]\n"
            )),
            "sources.toml:9:10: events: a `basic` source cannot list events",
        ),
        (
            table(&format!(
                "id = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"github\"\nsecret = \"inline\"\n"
            )),
            "sources.toml:7:1: unknown key 'secret' (did you mean 'secret_env'?)",
        ),
        (
            table("id = \"g\"\nprocess = 42\n"),
            "sources.toml:4:11: syntax: invalid type",
        ),
        (
            table("id = \"g\n"),
            "sources.toml:3:8: syntax: invalid basic string",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(&text).unwrap_err();
        assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        assert!(!error.contains("-value"), "no secret in {error}");
    }
}

#[test]
fn two_sources_of_one_id_are_refused() {
    let one = format!(
        "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\nscheme = \"gitlab\"\nsecret_env = \"GITHUB_SECRET\"\n"
    );
    let error = parse(&format!("{one}{one}")).unwrap_err();
    assert!(
        error.starts_with("sources.toml:7:1: id: two sources are named g"),
        "{error}"
    );
}

#[test]
fn a_table_may_map_the_payload_with_conditions_and_a_delivery_query() {
    let sources = parse(&format!(
        "[[source]]\nid = \"prs\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
         scheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\nbody_variable = \"delivery\"\n\
         when = [{{ path = \"$.body.action\", equals = [\"opened\", 7, true] }}]\n\
         delivery = \"$.body.id\"\n\n[source.map]\nauthor = \"$.body.pull_request.user.login\"\n\
         event = \"$.headers['x-github-event']\"\n"
    ))
    .unwrap();
    let mapping = sources[0].mapping().unwrap();
    assert_eq!(
        mapping.fields().map(|(f, q)| (f, q.as_str())).collect::<Vec<_>>(),
        [
            ("author", "$.body.pull_request.user.login"),
            ("event", "$.headers['x-github-event']")
        ]
    );
    assert_eq!(mapping.body_variable(), Some("delivery"));
    let condition = &sources[0].conditions()[0];
    assert_eq!(condition.query().as_str(), "$.body.action");
    assert_eq!(
        condition.equals(),
        &[Value::from("opened"), Value::from(7), Value::from(true)][..]
    );
    assert_eq!(
        sources[0].delivery_query().map(JsonQuery::as_str),
        Some("$.body.id")
    );
    // A table without them has none.
    let plain = parse(&format!(
        "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
         scheme = \"gitlab\"\nsecret_env = \"GITHUB_SECRET\"\n"
    ))
    .unwrap();
    assert!(plain[0].mapping().is_none() && plain[0].conditions().is_empty());
    assert!(plain[0].delivery_query().is_none());
}

#[test]
fn a_bad_query_stops_the_server_with_its_line_and_the_position_in_it() {
    let table = |extra: &str| {
        format!(
            "[[source]]\nid = \"g\"\nprocess = \"{ORDERS}\"\nenvironment = \"production\"\n\
             scheme = \"github\"\nsecret_env = \"GITHUB_SECRET\"\n{extra}"
        )
    };
    let cases = [
        (
            table("\n[source.map]\nauthor = \"$.body.commits[*].author\"\n"),
            "sources.toml:9:10: map.author: JSONPath query `$.body.commits[*].author` at position 14: not singular",
        ),
        (
            table("delivery = \"body.id\"\n"),
            "sources.toml:7:12: delivery: JSONPath query `body.id` at position 0:",
        ),
        (
            table("when = [{ path = \"$.body..action\", equals = [\"opened\"] }]\n"),
            "sources.toml:7:18: when.path: JSONPath query `$.body..action` at position 6: not singular",
        ),
        (
            table("when = [{ path = \"$.body.action\", equals = [] }]\n"),
            "sources.toml:7:44: when.equals: the condition on `$.body.action` lists no value",
        ),
        (
            table("body_variable = \"author\"\n[source.map]\nauthor = \"$.body.a\"\n"),
            "sources.toml:7:17: body_variable: the mapping names field `author` twice",
        ),
        (
            table("when = [{ path = \"$.body.action\" }]\n"),
            "sources.toml:7:9: syntax: missing field `equals`",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(&text).unwrap_err();
        assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
    }
}

const OWN: &str = r#"
[[environment]]
id = "live"
organization = "shop"
token_env = "SHOP_TOKEN"
token_sha256 = ["5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8"]

[[process]]
uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
organization = "shop"
name = "Refund"
definition_key = "refund"

[[process.deployment]]
environment = "live"
version = 4
fields = [
  { name = "orderNumber", kind = "text", mandatory = true },
  { name = "amount", kind = "number", mandatory = true },
  { name = "reason", kind = "choice", options = ["damaged", "late"], default = "damaged" },
  { name = "express", kind = "boolean", default = false },
]

[[process]]
uuid = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
organization = "shop"
name = "Exchange"

[[process.deployment]]
environment = "live"
draft = true
"#;

fn own_env(name: &str) -> Option<String> {
    (name == "SHOP_TOKEN").then(|| "a-shop-token-of-at-least-thirty-two-chars".to_owned())
}

fn config(text: &str) -> Result<Config, String> {
    parse_config("own.toml", text, &served(), None, own_env).map_err(|e| e.to_string())
}

#[test]
fn environments_and_processes_are_declared_with_their_tokens_and_typed_forms() {
    let declared = config(OWN).unwrap().declared.unwrap();
    let live = Environment::new(EnvironmentId::new("live"), OrganizationId::new("shop"));
    assert_eq!(declared.environments, std::slice::from_ref(&live));
    assert_eq!(
        declared.tokens,
        [
            (
                EnvironmentToken::new("a-shop-token-of-at-least-thirty-two-chars").digest(),
                live.clone()
            ),
            // sha256("password"), given in upper case.
            (EnvironmentToken::new("password").digest(), live.clone()),
        ]
    );
    assert_eq!(declared.models.len(), 2);
    let refund = &declared.deployments[0];
    assert_eq!(refund.version(), VersionTag::Released(4));
    assert_eq!(refund.definition_key(), "refund");
    let fields = refund.start_form().fields();
    assert_eq!(fields.len(), 4);
    assert_eq!(fields[1].kind(), &FieldKind::Number);
    assert!(fields[1].is_mandatory());
    assert_eq!(
        fields[2].kind(),
        &FieldKind::Choice(vec!["damaged".to_owned(), "late".to_owned()])
    );
    assert_eq!(fields[3].default_value(), Some(&Value::Bool(false)));
    assert_eq!(declared.deployments[1].version(), VersionTag::Draft);
    // The same file gives the same deployment ids, so that applying it
    // again adds nothing; another version, another id.
    let again = config(OWN).unwrap().declared.unwrap();
    assert_eq!(again.deployments[0].id(), refund.id());
    assert_ne!(declared.deployments[1].id(), refund.id());
    // A file of sources only declares nothing: the example is served.
    assert!(config("").unwrap().declared.is_none());
}

#[test]
fn a_declaration_it_cannot_use_is_named_by_line_and_key() {
    let cases = [
        (
            OWN.replace("kind = \"number\"", "kind = \"money\""),
            "own.toml:19:29: fields.kind: unknown kind `money`",
        ),
        (
            OWN.replace(
                "environment = \"live\"\nversion",
                "environment = \"test\"\nversion",
            ),
            "own.toml:15:15: environment: no [[environment]] is named `test`",
        ),
        (
            OWN.replace("default = false", "default = \"no\""),
            "own.toml:21:51: fields.default: the default is not boolean",
        ),
        (
            OWN.replace("default = \"damaged\"", "default = \"lost\""),
            "own.toml:20:80: fields.default: the default is not one of the options",
        ),
        (
            OWN.replace(
                "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            ),
            "own.toml:25:8: uuid: two processes have uuid 1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        ),
        (
            OWN.replace("token_env = \"SHOP_TOKEN\"", "token_env = \"NOPE\""),
            "own.toml:5:13: token_env: the environment variable NOPE is not set",
        ),
        (
            OWN.replace("5E88", "ZZ88"),
            "own.toml:6:16: token_sha256: a token's SHA-256 is 64 hex digits",
        ),
        (
            OWN.replace("version = 4", "version = 4\ndraft = true"),
            "own.toml:16:11: version: a draft has no version number",
        ),
        (
            OWN.replace("draft = true", ""),
            "own.toml:30:15: version: a deployment needs `version = N` or `draft = true`",
        ),
        (
            OWN.replace(
                "organization = \"shop\"\nname = \"Refund\"",
                "organization = \"other\"\nname = \"Refund\"",
            ),
            "own.toml:15:15: environment: environment `live` belongs to organization `shop`, the process to `other`",
        ),
        (
            OWN.replace("kind = \"choice\", ", "kind = \"text\", "),
            "own.toml:20:47: fields.options: only a `choice` field has options",
        ),
        (
            OWN.replace(
                "uuid = \"6ba7b810-9dad-11d1-80b4-00c04fd430c8\"",
                "uuid = \"nope\"",
            ),
            "own.toml:25:8: uuid: not a UUID",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, expected) in cases {
        let error = config(&text).map(|_| ()).unwrap_err();
        if !error.starts_with(expected) {
            wrong.push(format!("{error}\n  expected: {expected}"));
        }
        assert!(!error.contains("thirty-two"), "no token in {error}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn sources_of_a_declaring_file_start_its_own_processes() {
    let with_source = format!(
        "{OWN}\n[[source]]\nid = \"refunds\"\nprocess = \"1b4e28ba-2fa1-11d2-883f-0016d3cca427\"\n\
         environment = \"live\"\nscheme = \"gitlab\"\nsecret_env = \"SHOP_TOKEN\"\n"
    );
    let config = config(&with_source).unwrap();
    assert_eq!(config.sources[0].environment().organization().as_str(), "shop");
    // The example's process is not served by such a file.
    let error = parse_config(
        "own.toml",
        &with_source.replace(
            "process = \"1b4e28ba-2fa1-11d2-883f-0016d3cca427\"",
            &format!("process = \"{ORDERS}\""),
        ),
        &served(),
        None,
        own_env,
    )
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(error.contains("is not deployed to environment `live`"), "{error}");
}

#[test]
fn a_form_file_is_toml_or_json_of_the_same_fields() {
    let dir = std::env::temp_dir().join(format!("forms-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let toml = write(
        "form.toml",
        "fields = [{ name = \"n\", kind = \"integer\", mandatory = true }, { name = \"c\", kind = \"choice\", options = [\"a\"] }]\n",
    );
    let json = write(
        "form.json",
        r#"{"fields": [{"name": "n", "kind": "integer", "mandatory": true}, {"name": "c", "kind": "choice", "options": ["a"]}]}"#,
    );
    let bare = write(
        "bare.json",
        r#"[{"name": "n", "kind": "integer", "mandatory": true}, {"name": "c", "kind": "choice", "options": ["a"]}]"#,
    );
    let form = read_form(&toml).unwrap();
    assert_eq!(form.fields().len(), 2);
    assert_eq!(read_form(&json).unwrap(), form);
    assert_eq!(read_form(&bare).unwrap(), form);
    let bad = write("bad.json", r#"[{"name": "n", "kind": "money"}]"#);
    let error = read_form(&bad).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("{bad}: fields.kind: unknown kind `money`")),
        "{error}"
    );
    let twice = write(
        "twice.toml",
        "fields = [{ name = \"n\", kind = \"text\" }, { name = \"n\", kind = \"text\" }]\n",
    );
    let error = read_form(&twice).unwrap_err().to_string();
    assert!(
        error.contains(":1:51: fields.name: two fields are named `n`"),
        "{error}"
    );
    assert!(read_form(&write("broken.json", "{")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serdes_unknown_field_messages_become_unknown_keys_and_other_messages_stay() {
    assert_eq!(
        unknown_key("unknown field `x`, there are no fields").as_deref(),
        Some("unknown key 'x' (this table takes no keys)")
    );
    assert_eq!(
        unknown_key("unknown field `evnts`, expected one of `id`, `events`").as_deref(),
        Some("unknown key 'evnts' (did you mean 'events'?)")
    );
    assert_eq!(unknown_key("missing field `equals`"), None);
}
