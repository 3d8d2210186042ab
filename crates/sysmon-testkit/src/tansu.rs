//! A real tansu (Kafka-protocol) broker for tests. (being written)
