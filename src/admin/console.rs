//! The console: server-rendered pages (maud templates, every value
//! escaped; no script, no third-party asset) behind a session cookie.

use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};

use super::Admin;
use super::api::{Client, SUMMARY_WINDOW};
use super::auth::Session;
use super::error::AdminError;
use super::filters::{read_query, rfc3339};
use crate::delivery_log::{LoggedDelivery, LoggedOutcome};

const COOKIE: &str = "pw_admin";

/// The policy every page is served with: nothing but this server's own
/// style sheet and forms.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(super) fn routes() -> Router<Admin> {
    Router::new()
        .route("/", get(list))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/deliveries/{id}", get(show))
        .route("/deliveries/{id}/retry", post(retry))
        .route("/deliveries/{id}/discard", post(discard))
        .route("/sources", get(sources))
        .route("/console.css", get(style))
}

/// A page with the security headers.
fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(to) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, to);
    }
    response
}

fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · process-webhook" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    strong { "process-webhook" }
                    @if let Some(session) = session {
                        nav {
                            a href="/" { "Deliveries" }
                            a href="/sources" { "Sources" }
                            form method="post" action="/sign-out" class="inline" {
                                input type="hidden" name="csrf" value=(session.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// The session of the request's cookie.
fn session_of(admin: &Admin, headers: &HeaderMap) -> Option<(String, Session)> {
    let cookies = headers.get_all(header::COOKIE);
    cookies
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find_map(|id| admin.auth.session(id).map(|s| (id.to_owned(), s)))
}

/// A form's field.
fn field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

fn error_page(session: Option<&Session>, error: &AdminError) -> Response {
    if let AdminError::Unavailable(cause) = error {
        tracing::error!(target: "process_webhook", error = %crate::observe::chain(cause), "the console could not read the delivery log");
    }
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    page(
        status,
        layout(
            "Refused",
            session,
            html! { p.problem { code { (error.code()) } ": " (error.to_string()) } p { a href="/" { "Back to the deliveries" } } },
        ),
    )
}

async fn sign_in_page() -> Response {
    page(StatusCode::OK, sign_in_form(None))
}

fn sign_in_form(refused: Option<&AdminError>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(error) = refused { p.problem role="alert" { (error.to_string()) } }
            form method="post" action="/sign-in" {
                label for="token" { "Admin token" }
                input id="token" name="token" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn sign_in(
    State(admin): State<Admin>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = field(&body, "token").unwrap_or_default();
    match admin.auth.sign_in(client, &token) {
        Ok(id) => {
            let secure = headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                Admin::SESSION_LIFETIME.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            let mut response = redirect("/");
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(error) => {
            let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            page(status, sign_in_form(Some(&error)))
        }
    }
}

async fn sign_out(State(admin): State<Admin>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some((id, session)) = session_of(&admin, &headers) {
        if !session.checks(&field(&body, "csrf").unwrap_or_default()) {
            return error_page(Some(&session), &AdminError::InvalidCsrf);
        }
        admin.auth.sign_out(&id);
    }
    let mut response = redirect("/sign-in");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pw_admin=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

fn outcome_class(outcome: LoggedOutcome) -> &'static str {
    match outcome {
        LoggedOutcome::Started | LoggedOutcome::Replayed => "ok",
        LoggedOutcome::Refused | LoggedOutcome::Dead => "bad",
        _ => "other",
    }
}

async fn list(State(admin): State<Admin>, headers: HeaderMap, uri: Uri) -> Response {
    let Some((_, session)) = session_of(&admin, &headers) else {
        return redirect("/sign-in");
    };
    let query_text = uri.query().unwrap_or("");
    let query = match read_query(query_text) {
        Ok(query) => query,
        Err(error) => return error_page(Some(&session), &error),
    };
    let page_of = match admin.ops.log.page(&query).await {
        Ok(page) => page,
        Err(error) => return error_page(Some(&session), &error.into()),
    };
    let value = |name: &str| {
        form_urlencoded::parse(query_text.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let next = page_of.next.map(|cursor| {
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for (n, v) in form_urlencoded::parse(query_text.as_bytes()).filter(|(n, _)| n != "cursor") {
            pairs.append_pair(&n, &v);
        }
        pairs.append_pair("cursor", &cursor.to_string());
        format!("/?{}", pairs.finish())
    });
    let status = value("status");
    let body = html! {
        form method="get" action="/" class="filters" {
            label { "Status " select name="status" {
                option value="" selected[status.is_empty()] { "any" }
                @for outcome in LoggedOutcome::ALL {
                    option value=(outcome.as_str()) selected[status == outcome.as_str()] { (outcome.as_str()) }
                }
            } }
            label { "Source " input name="source" value=(value("source")); }
            label { "Process " input name="process" value=(value("process")); }
            label { "Environment " input name="environment" value=(value("environment")); }
            label { "Since " input name="since" placeholder="2026-12-07T00:00:00Z" value=(value("since")); }
            label { "Until " input name="until" value=(value("until")); }
            button type="submit" { "Filter" }
            a href={ "/?" (query_text) } class="refresh" { "Refresh" }
        }
        @if page_of.deliveries.is_empty() {
            p { "No delivery matches." }
        } @else {
            table id="deliveries" {
                thead { tr { th { "Received" } th { "Source" } th { "Event" } th { "Process" } th { "Outcome" } th { "Code" } th { "Instance" } } }
                tbody {
                    @for r in &page_of.deliveries {
                        tr {
                            td { a href={ "/deliveries/" (r.id) } { (rfc3339(r.received_at)) } }
                            td { (r.source.as_ref().map_or("token", |s| s.as_str())) }
                            td { (r.event.as_deref().unwrap_or("")) }
                            td { code { (r.process) } }
                            td class=(outcome_class(r.outcome)) { (r.outcome.as_str()) }
                            td { (r.code.as_deref().unwrap_or("")) }
                            td { (r.instance.as_ref().map_or("", |i| i.as_str())) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next { p { a href=(next) rel="next" { "Older deliveries" } } }
    };
    page(StatusCode::OK, layout("Deliveries", Some(&session), body))
}

async fn show(State(admin): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some((_, session)) = session_of(&admin, &headers) else {
        return redirect("/sign-in");
    };
    match admin.ops.delivery_at(&id).await {
        Ok(record) => page(StatusCode::OK, delivery_page(&session, &record)),
        Err(error) => error_page(Some(&session), &error),
    }
}

/// The payload, pretty-printed when it is JSON; as sent otherwise.
fn pretty(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| payload.to_owned())
}

fn delivery_page(session: &Session, r: &LoggedDelivery) -> Markup {
    let row = |name: &str, value: String| html! { tr { th { (name) } td { (value) } } };
    let body = html! {
        table.meta id="delivery" {
            (row("Id", r.id.to_string()))
            (row("Outcome", r.outcome.as_str().to_owned()))
            (row("Received", rfc3339(r.received_at)))
            (row("Environment", r.environment.as_str().to_owned()))
            (row("Process", r.process.to_string()))
            (row("Version", r.version.map(|v| v.to_string()).unwrap_or_default()))
            (row("Source", r.source.as_ref().map_or("token".to_owned(), |s| s.as_str().to_owned())))
            (row("Event", r.event.clone().unwrap_or_default()))
            (row("Sender's id or key", r.sender_id.clone().unwrap_or_default()))
            (row("Status", r.status.map(|s| s.to_string()).unwrap_or_default()))
            (row("Code", r.code.clone().unwrap_or_default()))
            (row("Instance", r.instance.as_ref().map(|i| i.as_str().to_owned()).unwrap_or_default()))
            (row("Duration", r.duration.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1_000.0)).unwrap_or_default()))
        }
        @if matches!(r.outcome, LoggedOutcome::Dead | LoggedOutcome::Queued) {
            div.actions {
                @if r.outcome == LoggedOutcome::Dead {
                    form method="post" action={ "/deliveries/" (r.id) "/retry" } class="inline" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" id="retry" { "Retry" }
                    }
                }
                form method="post" action={ "/deliveries/" (r.id) "/discard" } class="inline" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button type="submit" id="discard" { "Discard" }
                }
            }
        }
        @if let Some(problem) = &r.problem {
            h2 { "Refusal" }
            pre id="problem" { (serde_json::to_string_pretty(problem).unwrap_or_default()) }
        }
        h2 { "Attempts" }
        @if r.attempts.is_empty() { p { "None: the call settled it." } } @else {
            table id="attempts" {
                thead { tr { th { "At" } th { "Outcome" } th { "Error or note" } } }
                tbody { @for a in &r.attempts { tr { td { (rfc3339(a.at)) } td { (a.outcome.as_str()) } td { (a.error.as_deref().unwrap_or("")) } } } }
            }
        }
        h2 { "Headers" }
        @match &r.headers {
            Some(headers) => table id="headers" { tbody { @for (n, v) in headers.iter() { tr { th { (n) } td { (v) } } } } },
            None => p { "Not kept." },
        }
        h2 { "Payload" }
        @match &r.payload {
            Some(payload) => pre id="payload" { (pretty(payload)) },
            None => p { "Not kept (the payload policy keeps those of refused, queued and dead deliveries by default)." },
        }
    };
    layout("Delivery", Some(session), body)
}

async fn act(admin: Admin, headers: HeaderMap, id: String, body: Bytes, retry: bool) -> Response {
    let Some((_, session)) = session_of(&admin, &headers) else {
        return redirect("/sign-in");
    };
    if !session.checks(&field(&body, "csrf").unwrap_or_default()) {
        return error_page(Some(&session), &AdminError::InvalidCsrf);
    }
    let done = if retry {
        admin.ops.retry_at(&id).await
    } else {
        admin.ops.discard_at(&id).await
    };
    match done {
        Ok(record) => redirect(&format!("/deliveries/{}", record.id)),
        Err(error) => error_page(Some(&session), &error),
    }
}

async fn retry(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    act(admin, headers, id, body, true).await
}

async fn discard(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    act(admin, headers, id, body, false).await
}

async fn sources(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    let Some((_, session)) = session_of(&admin, &headers) else {
        return redirect("/sign-in");
    };
    let summaries = match admin.ops.log.summarize(SystemTime::now() - SUMMARY_WINDOW).await {
        Ok(summaries) => summaries,
        Err(error) => return error_page(Some(&session), &error.into()),
    };
    let body = html! {
        p { "The last 24 hours, per source and process." }
        @if summaries.is_empty() { p { "No delivery in the last 24 hours." } } @else {
            table id="sources" {
                thead { tr { th { "Source" } th { "Process" } @for o in LoggedOutcome::ALL { th { (o.as_str()) } } th { "Last delivery" } th { "Last failure" } } }
                tbody {
                    @for s in &summaries {
                        @let filter = {
                            let mut q = form_urlencoded::Serializer::new(String::new());
                            if let Some(source) = &s.source { q.append_pair("source", source.as_str()); }
                            q.append_pair("process", &s.process.to_string());
                            q.finish()
                        };
                        tr {
                            td { a href={ "/?" (filter) } { (s.source.as_ref().map_or("token", |s| s.as_str())) } }
                            td { code { (s.process) } }
                            @for o in LoggedOutcome::ALL { td { (s.counts.get(&o).copied().unwrap_or_default()) } }
                            td { (rfc3339(s.last_received_at)) }
                            td { @if let Some(f) = &s.last_failure {
                                a href={ "/deliveries/" (f.id) } { (rfc3339(f.received_at)) } " " (f.outcome.as_str()) " " (f.code.as_deref().unwrap_or(""))
                            } }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, layout("Sources", Some(&session), body))
}

async fn style() -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response();
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
