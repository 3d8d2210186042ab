//! Redis hot window: `RedisSink`. (being written)
