//! `StdoutTransport`: one native-JSON snapshot per line on standard output
//! (`sysmon-agent --stdout`), for piping into other tools or files.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;
use sysmon_core::{codec, Snapshot, Transport, TransportError};

/// Writes each snapshot as one JSON line to stdout and flushes per batch.
#[derive(Debug, Default)]
pub struct StdoutTransport {
    lock: Mutex<()>,
}

#[async_trait]
impl Transport for StdoutTransport {
    async fn publish(&self, batch: &[Snapshot]) -> Result<(), TransportError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        for s in batch {
            out.write_all(&codec::encode_json(s))
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| {
                    TransportError::other(format!("writing to stdout: {e}")).caused_by(e)
                })?;
        }
        out.flush()
            .map_err(|e| TransportError::other(format!("flushing stdout: {e}")).caused_by(e))
    }

    fn describe(&self) -> String {
        "stdout (JSON lines)".into()
    }
}
