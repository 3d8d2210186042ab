//! `WebhookNotifier`: alert notifications as HTTP(S) POSTs (`[[alerts.webhooks]]`).
//!
//! One delivery task and one bounded queue per target. [`AlertNotifier::notify`]
//! only filters by severity and `try_send`s into each queue, so it returns at once
//! whatever the targets do; a full queue (a target slower than the alerts, or
//! down for long) drops the event, counts it, and logs once per outage.
//!
//! Events are grouped per target ([`AlertGrouper`]): the events of one rule in
//! one state that arrive within the target's `group_wait` of the first go out
//! as one request, listing the first `max_listed` and counting the rest. A
//! group of one is a POST of the [`AlertEvent`] as JSON (its fields plus
//! `"source": "sysmon"`); a larger group is a POST of [`GroupBody`] (rule,
//! state, count, the machines, the first events, a summary line). With
//! `slack = true` either is a Slack-compatible `{"text": "..."}` body. Each
//! target sends at most `rate_limit` requests per `rate_period`; while the
//! limit holds, new events join the waiting groups (nothing is dropped for the
//! limit), and when the notifier is dropped what waits is sent regardless. Each attempt has the target's `timeout`. A 2xx answer
//! is success; anything else (a non-2xx status, a timeout, a refused connection,
//! a TLS error) is a failure, retried `retries` times with exponential backoff
//! (`backoff`, then doubled each time, at most [`MAX_BACKOFF`]), except client
//! errors (4xx other than 408 and 429), which a retry would not fix. Redirects
//! are not followed (a POST must not silently turn into a GET elsewhere): a 3xx
//! is a failure. When the last attempt fails, one warning says which target,
//! which alert and why; the event counts as failed.
//!
//! HTTPS uses rustls with the `ring` provider and the system's root
//! certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` are honoured), plus any given
//! in [`WebhookOptions::extra_root_certs_pem`]. URLs are logged without their
//! credentials, query and path beyond the first segment (Slack's webhook URLs
//! carry their secret in the path).
//!
//! Dropping the notifier closes the queues; each task delivers what is already
//! queued, then ends. [`WebhookNotifier::flush`] waits for the queues to drain.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sysmon_analytics::alerts::{AlertEvent, AlertState, Severity, WebhookConfig};
use sysmon_analytics::notify::{AlertGroup, AlertGrouper, AlertNotifier};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::error::SinksError;

/// Events queued per target before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The longest wait between two attempts, however many retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Options of [`WebhookNotifier::with_options`] beyond the per-target settings.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Events queued per target; beyond, new events are dropped and counted.
    pub queue_capacity: usize,
    /// PEM certificates trusted as roots in addition to the system's (a private CA).
    pub extra_root_certs_pem: Vec<Vec<u8>>,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            extra_root_certs_pem: Vec::new(),
        }
    }
}

/// One target's counters, as returned by [`WebhookNotifier::stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookStats {
    /// The target's URL, without credentials, query, or path beyond its first segment.
    pub target: String,
    /// Events taken into the queue.
    pub queued: u64,
    /// Events delivered (a 2xx answer).
    pub sent: u64,
    /// Events given up after the last attempt.
    pub failed: u64,
    /// Requests delivered (one per group of events).
    pub requests: u64,
    /// Events dropped because the queue was full (or the delivery task had ended).
    pub dropped: u64,
    /// Events below the target's `min_severity`, not sent.
    pub skipped: u64,
    /// HTTP attempts made (first tries and retries).
    pub attempts: u64,
}

impl WebhookStats {
    /// Queued events not yet sent or given up.
    pub fn pending(&self) -> u64 {
        self.queued.saturating_sub(self.sent + self.failed)
    }
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    requests: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    attempts: AtomicU64,
    /// The queue is refusing events: logged once per outage.
    dropping: AtomicBool,
}

#[derive(Debug)]
struct Target {
    display: String,
    min_severity: Severity,
    tx: mpsc::Sender<AlertEvent>,
    counters: Arc<Counters>,
}

/// Delivers alert events to webhooks; see the [module docs](self).
#[derive(Debug)]
pub struct WebhookNotifier {
    targets: Vec<Target>,
}

impl WebhookNotifier {
    /// A notifier for `targets` with the default options. Must be called inside a
    /// tokio runtime: it spawns one delivery task per target on it.
    pub fn new(targets: &[WebhookConfig]) -> Result<WebhookNotifier, SinksError> {
        WebhookNotifier::with_options(targets, WebhookOptions::default())
    }

    /// A notifier for `targets` with `options`. Must be called inside a tokio runtime.
    ///
    /// Fails on a URL that is not `http(s)://host...`, a zero timeout or queue
    /// capacity, an unreadable extra certificate, or outside a runtime.
    pub fn with_options(
        targets: &[WebhookConfig],
        options: WebhookOptions,
    ) -> Result<WebhookNotifier, SinksError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            SinksError::Config("the webhook notifier must be created inside a tokio runtime".into())
        })?;
        if options.queue_capacity == 0 {
            return Err(SinksError::Config(
                "webhook queue capacity must be at least 1".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sysmon/", env!("CARGO_PKG_VERSION")));
        for pem in &options.extra_root_certs_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| SinksError::Config(format!("webhook root certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| SinksError::Config(format!("webhook HTTP client: {e}")))?;
        let mut out = Vec::with_capacity(targets.len());
        for cfg in targets {
            let url = reqwest::Url::parse(&cfg.url).map_err(|e| {
                SinksError::Config(format!("webhook url `{}`: {e}", redact(&cfg.url)))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(SinksError::Config(format!(
                    "webhook url `{}` is not an http(s) URL",
                    redact(&cfg.url)
                )));
            }
            if cfg.timeout.is_zero() {
                return Err(SinksError::Config(format!(
                    "webhook {}: timeout must be positive",
                    redact(&cfg.url)
                )));
            }
            let (tx, rx) = mpsc::channel(options.queue_capacity);
            if cfg.max_listed == 0 || (cfg.rate_limit > 0 && cfg.rate_period.is_zero()) {
                return Err(SinksError::Config(format!(
                    "webhook {}: max_listed must be positive, and rate_period too when \
                     rate_limit is set",
                    redact(&cfg.url)
                )));
            }
            let counters = Arc::new(Counters::default());
            let display = redact(&cfg.url);
            let worker = Worker {
                client: client.clone(),
                url,
                display: display.clone(),
                cfg: cfg.clone(),
                counters: counters.clone(),
            };
            runtime.spawn(Arc::new(worker).run(rx, options.queue_capacity));
            out.push(Target {
                display,
                min_severity: cfg.min_severity,
                tx,
                counters,
            });
        }
        Ok(WebhookNotifier { targets: out })
    }

    /// Each target's counters, in configuration order.
    pub fn stats(&self) -> Vec<WebhookStats> {
        self.targets
            .iter()
            .map(|t| {
                let c = &t.counters;
                WebhookStats {
                    target: t.display.clone(),
                    queued: c.queued.load(Ordering::Relaxed),
                    sent: c.sent.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    requests: c.requests.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    skipped: c.skipped.load(Ordering::Relaxed),
                    attempts: c.attempts.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The counters summed over the targets (`target` is `"all"`).
    pub fn totals(&self) -> WebhookStats {
        let mut t = WebhookStats {
            target: "all".into(),
            queued: 0,
            sent: 0,
            failed: 0,
            requests: 0,
            dropped: 0,
            skipped: 0,
            attempts: 0,
        };
        for s in self.stats() {
            t.queued += s.queued;
            t.sent += s.sent;
            t.failed += s.failed;
            t.requests += s.requests;
            t.dropped += s.dropped;
            t.skipped += s.skipped;
            t.attempts += s.attempts;
        }
        t
    }

    /// Waits until every queued event is sent or given up, at most `timeout`.
    /// True if the queues drained in time. (Events notified meanwhile count too.)
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.stats().iter().all(|s| s.pending() == 0) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl AlertNotifier for WebhookNotifier {
    fn notify(&self, event: &AlertEvent) {
        for t in &self.targets {
            let c = &t.counters;
            if event.severity < t.min_severity {
                c.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Counted before sending so that `pending` never goes below zero.
            c.queued.fetch_add(1, Ordering::Relaxed);
            match t.tx.try_send(event.clone()) {
                Ok(()) => {
                    if c.dropping.load(Ordering::Relaxed)
                        && c.dropping.swap(false, Ordering::Relaxed)
                    {
                        info!(target_url = %t.display, dropped_total = c.dropped.load(Ordering::Relaxed),
                              "webhook queue accepting notifications again");
                    }
                }
                Err(e) => {
                    c.queued.fetch_sub(1, Ordering::Relaxed);
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                    if !c.dropping.swap(true, Ordering::Relaxed) {
                        let why = match e {
                            mpsc::error::TrySendError::Full(_) => {
                                "its queue is full (the target is slow or down)"
                            }
                            mpsc::error::TrySendError::Closed(_) => "its delivery task has ended",
                        };
                        warn!(target_url = %t.display, rule = %event.rule,
                              "webhook notifications are being dropped: {why}; counting drops until it recovers");
                    }
                }
            }
        }
    }
}

/// The JSON body: the event's fields plus `"source": "sysmon"`.
#[derive(Serialize)]
struct EventBody<'a> {
    source: &'static str,
    #[serde(flatten)]
    event: &'a AlertEvent,
}

/// The JSON body of a group of more than one event.
#[derive(Debug, Serialize)]
pub struct GroupBody<'a> {
    /// Always `"sysmon"`.
    pub source: &'static str,
    /// The rule's name.
    pub rule: &'a str,
    /// The rule's severity.
    pub severity: Severity,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// How many events the request stands for.
    pub count: usize,
    /// Events counted but not listed.
    pub more: usize,
    /// What each listed event is about (`web-01`, `web-01 (/data)`, `the fleet`).
    pub machines: Vec<String>,
    /// When the first listed event happened (epoch seconds).
    pub at: f64,
    /// One line: `cpu_high firing on 340 machines: web-001, … and 320 more`.
    pub message: String,
    /// The listed events.
    pub events: &'a [AlertEvent],
}

/// The request body for `group`: a group of one is [`body`] of its event; a
/// larger one is [`GroupBody`] as JSON, or with `slack` a `{"text": ...}`.
pub fn group_body(group: &AlertGroup, slack: bool) -> Vec<u8> {
    if let (1, Some(e)) = (group.count, group.events.first()) {
        return body(e, slack);
    }
    let bytes = if slack {
        serde_json::to_vec(&SlackBody {
            text: slack_group_text(group),
        })
    } else {
        serde_json::to_vec(&GroupBody {
            source: "sysmon",
            rule: &group.rule,
            severity: group.severity,
            state: group.state,
            count: group.count,
            more: group.more(),
            machines: group.targets(),
            at: group.events.first().map_or(f64::NAN, |e| e.at),
            message: group.summary(),
            events: &group.events,
        })
    };
    bytes.unwrap_or_else(|_| b"{}".to_vec())
}

/// The Slack message of a group: `:rotating_light: *FIRING* [warning]
/// cpu_high on 340 machines: web-001, web-002, … and 338 more`, escaped as
/// [`slack_text`] does.
pub fn slack_group_text(group: &AlertGroup) -> String {
    let (icon, word) = state_words(group.state);
    let mut text = format!(
        "{icon} *{word}* [{}] {} on {} {}: {}",
        group.severity,
        slack_escape(&group.rule),
        group.count,
        if group
            .events
            .iter()
            .all(|e| e.machine_id.is_some() && e.subject.is_none())
        {
            "machines"
        } else {
            "alerts"
        },
        slack_escape(&group.targets().join(", "))
    );
    if group.more() > 0 {
        text.push_str(&format!(" … and {} more", group.more()));
    }
    text
}

fn state_words(state: AlertState) -> (&'static str, &'static str) {
    match state {
        AlertState::Firing => (":rotating_light:", "FIRING"),
        AlertState::Resolved => (":white_check_mark:", "RESOLVED"),
        AlertState::Pending => (":hourglass:", "PENDING"),
        AlertState::Inactive => (":information_source:", "INACTIVE"),
    }
}

/// The Slack-compatible body.
#[derive(Serialize)]
struct SlackBody {
    text: String,
}

/// The request body for `event`: the event as JSON (plus `"source": "sysmon"`),
/// or with `slack` a Slack-compatible `{"text": ...}`.
pub fn body(event: &AlertEvent, slack: bool) -> Vec<u8> {
    let bytes = if slack {
        serde_json::to_vec(&SlackBody {
            text: slack_text(event),
        })
    } else {
        serde_json::to_vec(&EventBody {
            source: "sysmon",
            event,
        })
    };
    // Plain structs with string keys: serialising cannot fail; never panic anyway.
    bytes.unwrap_or_else(|_| b"{}".to_vec())
}

/// The Slack message: `:rotating_light: *FIRING* [warning] cpu_high on web-01: message`.
///
/// What comes from the monitored machines (machine id, subject, message) is
/// escaped as Slack asks (`&`, `<`, `>`), so a machine cannot make the message
/// ping `<!channel>` or show a link of its choosing.
pub fn slack_text(event: &AlertEvent) -> String {
    let (icon, word) = state_words(event.state);
    let mut text = format!(
        "{icon} *{word}* [{}] {}",
        event.severity,
        slack_escape(&event.rule)
    );
    match &event.machine_id {
        Some(m) => text.push_str(&format!(" on {}", slack_escape(m))),
        None => text.push_str(" on the fleet"),
    }
    if let Some(s) = &event.subject {
        text.push_str(&format!(" ({})", slack_escape(s)));
    }
    text.push_str(": ");
    text.push_str(&slack_escape(&event.message));
    text
}

/// `s` with Slack's three control characters escaped
/// (<https://api.slack.com/reference/surfaces/formatting#escaping>).
fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `url` for logs: scheme, host, port and first path segment only.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?"));
            if let Some(p) = u.port() {
                s.push_str(&format!(":{p}"));
            }
            let mut segments = u.path_segments().into_iter().flatten();
            if let Some(first) = segments.next() {
                s.push('/');
                s.push_str(first);
                if segments.next().is_some() {
                    s.push_str("/…");
                }
            }
            s
        }
        Err(_) => "<unparsable url>".into(),
    }
}

struct Worker {
    client: reqwest::Client,
    url: reqwest::Url,
    display: String,
    cfg: WebhookConfig,
    counters: Arc<Counters>,
}

/// Why an attempt failed, and whether another attempt could help.
struct AttemptError {
    reason: String,
    retryable: bool,
}

/// At most `limit` requests per `period` (0: no limit): the instants of the
/// last `limit` requests.
#[derive(Debug)]
struct RateLimiter {
    limit: usize,
    period: Duration,
    sent: VecDeque<Instant>,
}

impl RateLimiter {
    fn new(limit: u32, period: Duration) -> Self {
        RateLimiter {
            limit: limit as usize,
            period,
            sent: VecDeque::new(),
        }
    }

    /// The earliest instant at or after `now` a request may go.
    fn next_free(&self, now: Instant) -> Instant {
        if self.limit == 0 || self.sent.len() < self.limit {
            return now;
        }
        self.sent
            .front()
            .map_or(now, |t| (*t + self.period).max(now))
    }

    /// A request goes at `now`.
    fn take(&mut self, now: Instant) {
        if self.limit == 0 {
            return;
        }
        while self.sent.len() >= self.limit {
            self.sent.pop_front();
        }
        self.sent.push_back(now);
    }
}

/// The outcome of delivering one group: the group, then the attempts made or
/// those and the last reason.
type Delivered = (AlertGroup, Result<u32, (u32, String)>);

impl Worker {
    /// Takes events off `rx` into groups (at most `max_groups` waiting) while
    /// one group at a time is delivered, each once its `group_wait` passed
    /// and the rate limit allows; at the end (queue closed) sends what waits.
    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<AlertEvent>, max_groups: usize) {
        let mut grouper = AlertGrouper::new(self.cfg.max_listed, max_groups);
        let mut limiter = RateLimiter::new(self.cfg.rate_limit, self.cfg.rate_period);
        // The delivery in progress and how many events it carries.
        let mut inflight: Option<(tokio::task::JoinHandle<Delivered>, u64)> = None;
        let mut closed = false;
        // Consecutive groups given up: one "delivering again" line when it recovers.
        let mut failing = 0u64;
        let mut limited = false;
        loop {
            if closed && inflight.is_none() && grouper.is_empty() {
                break;
            }
            let now = Instant::now();
            let next_send = match (&inflight, closed) {
                (Some(_), _) => None,
                // Closing: everything waiting goes now, limit or not.
                (None, true) => (!grouper.is_empty()).then_some(now),
                (None, false) => grouper
                    .next_due(self.cfg.group_wait)
                    .map(|due| due.max(limiter.next_free(now))),
            };
            if let Some(at) = next_send {
                let due = grouper.next_due(self.cfg.group_wait).unwrap_or(now);
                if at > due && !limited {
                    limited = true;
                    debug!(target_url = %self.display, waiting = grouper.pending(),
                           "webhook rate limit reached; events join the waiting groups");
                }
            }
            tokio::select! {
                got = rx.recv(), if !closed && !grouper.is_full() => match got {
                    Some(event) => {
                        // Not full: a new group fits, an existing one always does.
                        if let Err(event) = grouper.push(event, Instant::now()) {
                            self.counters.failed.fetch_add(1, Ordering::Relaxed);
                            debug!(rule = %event.rule, "webhook group table full");
                        }
                    }
                    None => closed = true,
                },
                joined = async {
                    match inflight.as_mut() {
                        Some((t, _)) => t.await,
                        None => std::future::pending().await,
                    }
                }, if inflight.is_some() => {
                    let carried = inflight.take().map_or(0, |(_, n)| n);
                    match joined {
                        Ok((group, result)) => self.delivered(&group, result, &mut failing),
                        Err(e) => {
                            self.counters.failed.fetch_add(carried, Ordering::Relaxed);
                            warn!(target_url = %self.display, error = %e,
                                  "webhook delivery task failed; its notifications count as failed");
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_send.unwrap_or(now).into()), if next_send.is_some() => {
                    let now = Instant::now();
                    let group = if closed {
                        grouper.take_oldest()
                    } else {
                        grouper.take_due(now, self.cfg.group_wait)
                    };
                    if let Some(group) = group {
                        limiter.take(now);
                        limited = false;
                        let worker = self.clone();
                        let carried = group.count as u64;
                        let task = tokio::spawn(async move {
                            let body = group_body(&group, worker.cfg.slack);
                            let result = worker.deliver(body).await;
                            (group, result)
                        });
                        inflight = Some((task, carried));
                    }
                }
            }
        }
        debug!(target_url = %self.display, "webhook queue closed; delivery task ends");
    }

    fn delivered(&self, group: &AlertGroup, result: Result<u32, (u32, String)>, failing: &mut u64) {
        let n = group.count as u64;
        match result {
            Ok(attempts) => {
                self.counters.sent.fetch_add(n, Ordering::Relaxed);
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                if *failing > 0 {
                    info!(target_url = %self.display, failed_before = *failing,
                          "webhook delivering again");
                    *failing = 0;
                }
                debug!(target_url = %self.display, rule = %group.rule, events = n, attempts,
                       "webhook delivered");
            }
            Err((attempts, reason)) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                *failing += 1;
                let machine = match (group.count, group.events.first()) {
                    (1, Some(e)) => e.machine_id.clone().unwrap_or_else(|| "fleet".into()),
                    _ => format!("{} machines", group.count),
                };
                warn!(target_url = %self.display, rule = %group.rule, machine = %machine,
                      state = ?group.state, attempts, reason = %reason,
                      "webhook delivery failed; notification not delivered");
            }
        }
    }

    /// Attempts delivery with retries: the attempts made, or those and the last reason.
    async fn deliver(&self, body: Vec<u8>) -> Result<u32, (u32, String)> {
        let mut delay = self.cfg.backoff;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            match self.attempt(body.clone()).await {
                Ok(()) => return Ok(attempt),
                Err(e) => {
                    if !e.retryable || attempt > self.cfg.retries {
                        return Err((attempt, e.reason));
                    }
                    debug!(target_url = %self.display, attempt, reason = %e.reason,
                           retry_in = ?delay, "webhook attempt failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn attempt(&self, body: Vec<u8>) -> Result<(), AttemptError> {
        let request = self
            .client
            .post(self.url.clone())
            .timeout(self.cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        // reqwest's error text names the full URL (a Slack secret path, a
        // `?token=`): drop it, the log line names the redacted target.
        let response = request.send().await.map_err(|e| AttemptError {
            reason: describe(&e.without_url(), self.cfg.timeout),
            retryable: true,
        })?;
        let status = response.status();
        // Read (and discard) the answer so the connection can be reused; within the
        // same per-attempt timeout.
        let _ = response.bytes().await;
        if status.is_success() {
            return Ok(());
        }
        let client_error = status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS;
        Err(AttemptError {
            reason: format!("HTTP {status}"),
            retryable: !client_error,
        })
    }
}

/// A reqwest error with its causes, in a line.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {timeout:?}");
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_n_per_period() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, Duration::from_secs(60));
        assert_eq!(r.next_free(t0), t0);
        r.take(t0);
        r.take(t0 + Duration::from_secs(1));
        assert_eq!(
            r.next_free(t0 + Duration::from_secs(2)),
            t0 + Duration::from_secs(60)
        );
        let t = t0 + Duration::from_secs(60);
        assert_eq!(r.next_free(t), t);
        r.take(t);
        assert_eq!(r.next_free(t), t0 + Duration::from_secs(61));
        let mut off = RateLimiter::new(0, Duration::ZERO);
        for _ in 0..100 {
            off.take(t0);
        }
        assert_eq!(off.next_free(t0), t0);
    }

    #[test]
    fn urls_are_logged_without_secrets() {
        assert_eq!(
            redact("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/services/…"
        );
        assert_eq!(
            redact("http://user:pw@127.0.0.1:8080/hook?token=abc"),
            "http://127.0.0.1:8080/hook"
        );
        assert_eq!(redact("https://example.com"), "https://example.com/");
        assert_eq!(redact("nope"), "<unparsable url>");
    }

    #[test]
    fn slack_text_escapes_what_machines_send() {
        let event = AlertEvent {
            rule: "cpu_high".into(),
            severity: Severity::Warning,
            machine_id: Some("<!channel>".into()),
            subject: Some("a&b".into()),
            state: AlertState::Firing,
            at: 0.0,
            value: 99.0,
            message: "see <https://evil.example|your bank>".into(),
        };
        let text = slack_text(&event);
        assert_eq!(
            text,
            ":rotating_light: *FIRING* [warning] cpu_high on &lt;!channel&gt; (a&amp;b): \
             see &lt;https://evil.example|your bank&gt;"
        );
        assert!(!text.contains('<') && !text.contains('>'));
    }

    #[tokio::test]
    async fn a_failed_delivery_reason_does_not_name_the_secret_url() {
        // A port nothing listens on: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let url = format!("http://127.0.0.1:{port}/services/T000/B000/XXXXSECRET?token=hunter2");
        let cfg = WebhookConfig {
            retries: 0,
            backoff: Duration::from_millis(10),
            slack: true,
            ..WebhookConfig::new(url.clone())
        };
        let worker = Worker {
            client: reqwest::Client::new(),
            url: reqwest::Url::parse(&url).unwrap(),
            display: redact(&url),
            cfg,
            counters: Arc::new(Counters::default()),
        };
        let err = worker.attempt(b"{}".to_vec()).await.err().unwrap();
        assert!(err.retryable);
        assert!(!err.reason.is_empty());
        assert!(
            !err.reason.contains("XXXXSECRET") && !err.reason.contains("hunter2"),
            "reason leaks the URL: {}",
            err.reason
        );
    }
}
