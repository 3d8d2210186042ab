//! One maintainer among several ingesters: a session-level PostgreSQL advisory
//! lock, held on a connection of its own.
//!
//! Every ingester's maintenance tick tries to take the lock; the one that has
//! it runs maintenance (partitions, rollups, retention) and leads the
//! fleet-wide work: the fleet alert rules, on every machine's latest stored
//! values (`sysmon_analytics::SharedFleet`, asked every few seconds, so a
//! follower also takes the lock over between maintenance passes). When that ingester dies, its connection closes and
//! PostgreSQL releases the lock, so the next tick of another ingester takes
//! it over: no lease to expire, no clock to trust.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::pool::{connect_one, Connector};
use crate::error::SinksError;

/// The advisory lock key of maintenance ("sysmon" "mntn").
pub const MAINTENANCE_LOCK: i64 = 0x7379_736d_6d6e_746e;

/// The maintenance lock of one sink; see the [module docs](self).
#[derive(Default)]
pub(crate) struct MaintenanceLock {
    /// The connection holding the lock, while this process holds it.
    held: Mutex<Option<Client>>,
    leader: AtomicBool,
}

impl MaintenanceLock {
    /// Whether this process held the lock at its last check.
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Keeps or takes the lock. Returns whether this process holds it now.
    pub(crate) async fn acquire(&self, connector: &Connector) -> Result<bool, SinksError> {
        let mut held = self.held.lock().await;
        if let Some(client) = held.as_ref() {
            // Still ours while the session lives.
            if !client.is_closed() && client.simple_query("").await.is_ok() {
                return Ok(true);
            }
            *held = None;
            self.leader.store(false, Ordering::Relaxed);
            tracing::warn!("lost the postgres maintenance lock (its connection closed)");
        }
        let client = connect_one(connector).await?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MAINTENANCE_LOCK])
            .await?
            .get(0);
        if got {
            tracing::info!("this ingester now runs postgres maintenance and the fleet-wide work");
            *held = Some(client);
        }
        self.leader.store(got, Ordering::Relaxed);
        Ok(got)
    }

    /// Gives the lock up (the connection closes), so another ingester takes over.
    pub(crate) async fn release(&self) {
        let mut held = self.held.lock().await;
        if held.take().is_some() {
            tracing::info!("released the postgres maintenance lock");
        }
        self.leader.store(false, Ordering::Relaxed);
    }
}
