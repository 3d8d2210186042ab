//! Kafka transport: `KafkaTransport`, `KafkaReceiver`. (being written)
