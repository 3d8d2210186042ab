//! What the `tcp` collector costs on a host with many sockets, in each mode:
//! opens N loopback connections (2 N established sockets plus a listener),
//! then times `collect` with `sock_diag` netlink and with `/proc/net/tcp`
//! parsing, and prints the median and the CPU time per collection.
//!
//! ```text
//! cargo run --release -p sysmon-collectors --example tcp_cost -- 9000
//! ```
//!
//! N is bounded by the open-files limit (two descriptors per connection).

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sysmon_collectors::{TcpCollector, TcpOptions, TcpSource};
use sysmon_core::{Collector, Snapshot};

/// This process's CPU time (user + system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

fn main() {
    let n: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 9000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: tcp_cost [CONNECTIONS (default 9000)]");
            std::process::exit(2);
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::with_capacity(2 * n);
    for _ in 0..n {
        match TcpStream::connect(addr).and_then(|c| Ok((c, listener.accept()?.0))) {
            Ok((c, s)) => {
                held.push(c);
                held.push(s);
            }
            Err(e) => {
                eprintln!("stopped at {} connections: {e}", held.len() / 2);
                break;
            }
        }
    }
    println!("sockets held by this process: {} (+1 listener)", held.len());
    for (label, mode) in [("netlink", TcpSource::Netlink), ("proc", TcpSource::Proc)] {
        let mut c = TcpCollector::new(TcpOptions {
            mode,
            states_every: 1,
        })
        .expect("collector");
        let mut s = Snapshot::default();
        c.collect(&mut s).expect("collect");
        let runs = 30;
        let mut wall = Vec::with_capacity(runs);
        let cpu0 = cpu_time();
        for _ in 0..runs {
            let t = Instant::now();
            c.collect(&mut s).expect("collect");
            wall.push(t.elapsed());
        }
        let cpu = cpu_time() - cpu0;
        wall.sort();
        let t = s.tcp.unwrap_or_default();
        println!(
            "{label:8} median {:>8.2} ms  cpu/collect {:>7.2} ms  (v4 established {}, listen {}, time_wait {})",
            wall[runs / 2].as_secs_f64() * 1000.0,
            cpu.as_secs_f64() * 1000.0 / runs as f64,
            t.v4.established,
            t.v4.listen,
            t.v4.time_wait
        );
    }
}
