//! A real redis-server for tests. (being written)
