//! SQLite history: `SqliteSink`. (being written)
