//! Topic administration: [`ensure_topic`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use tracing::info;

use super::{client_config, creation_error, SysmonContext};
use crate::error::SinksError;

/// What [`ensure_topic`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredTopic {
    /// The topic's name.
    pub topic: String,
    /// `true` when this call created the topic.
    pub created: bool,
    /// The topic's partition count as the brokers report it.
    pub partitions: usize,
}

/// How long [`ensure_topic`] waits for the brokers to answer and for a new
/// topic to show up in their metadata.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Makes sure `topic` exists, creating it with `partitions` partitions and
/// `replication_factor` replicas if it does not (an existing topic is left as
/// it is, whatever its partition count). `options` are librdkafka properties
/// (TLS, SASL) passed through unchanged.
pub async fn ensure_topic(
    brokers: &str,
    options: &BTreeMap<String, String>,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
) -> Result<EnsuredTopic, SinksError> {
    if topic.trim().is_empty() {
        return Err(SinksError::Config("the Kafka topic name is empty".into()));
    }
    if partitions < 1 || replication_factor < 1 {
        return Err(SinksError::Config(format!(
            "topic {topic}: partitions ({partitions}) and replication factor \
             ({replication_factor}) must be at least 1"
        )));
    }
    let config = client_config(brokers, &[("client.id", "sysmon-admin")], options)?;
    let (context, state) = SysmonContext::new("admin");
    let admin: Arc<AdminClient<SysmonContext>> = Arc::new(
        config
            .create_with_context(context)
            .map_err(|e| creation_error("creating the Kafka admin client", e))?,
    );
    let new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    let opts = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics([&new_topic], &opts)
        .await
        .map_err(|e| {
            let last = state
                .last_error()
                .map(|l| format!(" (last broker error: {l})"))
                .unwrap_or_default();
            SinksError::Unavailable(format!(
                "cannot create topic {topic}: Kafka at {brokers} did not answer: {e}{last}"
            ))
        })?;
    let mut created = false;
    // A refusal (no right to create topics, a policy) is fine if the topic exists.
    let mut refused: Option<SinksError> = None;
    for r in results {
        match r {
            Ok(_) => created = true,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                let message = format!(
                    "creating topic {name} on {brokers}: {}",
                    KafkaError::AdminOp(code)
                );
                refused = Some(if is_transient(code) {
                    SinksError::Unavailable(message)
                } else {
                    SinksError::Config(message)
                });
            }
        }
    }
    // Wait until the brokers' metadata shows the topic with its partitions.
    let deadline = Instant::now()
        + if refused.is_some() {
            Duration::from_secs(2)
        } else {
            ADMIN_TIMEOUT
        };
    let topic_name = topic.to_string();
    loop {
        let lookup = {
            let name = topic_name.clone();
            let admin = admin.clone();
            tokio::task::spawn_blocking(move || {
                admin
                    .inner()
                    .fetch_metadata(Some(&name), Duration::from_secs(5))
                    .map(|md| partition_count(&md, &name))
            })
            .await
        };
        match lookup {
            Ok(Ok(n)) if n > 0 => {
                if created {
                    info!(
                        topic,
                        partitions = n,
                        replication_factor,
                        "created Kafka topic"
                    );
                }
                return Ok(EnsuredTopic {
                    topic: topic_name,
                    created,
                    partitions: n,
                });
            }
            Ok(Err(e)) if Instant::now() >= deadline => {
                return Err(refused.take().unwrap_or_else(|| {
                    SinksError::Unavailable(format!(
                        "no metadata for topic {topic} from {brokers}: {e}"
                    ))
                }))
            }
            Err(e) => {
                return Err(SinksError::Config(format!(
                    "metadata lookup task failed: {e}"
                )))
            }
            _ if Instant::now() >= deadline => {
                return Err(refused.take().unwrap_or_else(|| {
                    SinksError::Unavailable(format!(
                        "topic {topic} does not appear in the metadata of {brokers} \
                         within {ADMIN_TIMEOUT:?}"
                    ))
                }))
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The number of partitions `topic` has in `metadata` (0 when it is absent or
/// the broker reported an error for it).
pub(crate) fn partition_count(metadata: &Metadata, topic: &str) -> usize {
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

/// Topic-creation errors that may go away by themselves (a broker starting,
/// a controller moving).
fn is_transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NotController
            | RDKafkaErrorCode::BrokerNotAvailable
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
    )
}
