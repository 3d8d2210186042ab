#!/usr/bin/env python3
"""The legacy Python consumer's Kafka -> SQLite path, for sysmon's compatibility test.

sysmon must stay readable by the consumer of the Python system it replaces (the seed
guide in ../shared/seed/, its facts in ../shared/legacy-system.md). This script does
what that consumer does with the same library, installed the same way (`kafka-python`
alone, no codec extras: see requirements.txt):

* one `KafkaConsumer` on the topic, no consumer group, `auto_offset_reset` "latest",
  values decoded as UTF-8 and parsed with `json.loads`;
* per message: missing fields default (machine_id "unknown", numbers 0), the sender's
  epoch seconds become local time `YYYY-MM-DD HH:MM:SS`, and `INSERT OR REPLACE`
  writes `raw_metrics` (keyed by machine and that second), `aggregated_metrics` (the
  minute, overwritten by the last sample), `top_processes` (the first five by CPU,
  keyed by minute and name) and `anomalies` (CPU or memory above 80 %), then commits;
* an error in one message is logged and the loop goes on; an error raised by the loop
  itself (for example `UnsupportedCodecError` while decompressing a fetched batch)
  is logged as "Error in consumer loop" and ends it.

Left out: the Redis writes (hashes with a TTL, a sorted set per minute): they need the
`redis` package and a server, and change nothing about what Kafka delivers.

Test hooks, not in the original: --ready-file is written once the consumer has its
partitions and a position on each (so a test publishes only after that, as a user
starts the consumer before the producers); --idle-exit ends the loop after that many
seconds without a message (`consumer_timeout_ms`); the exit status is 1 when the loop
failed.
"""

import argparse
import json
import logging
import sqlite3
import sys
import time
from datetime import datetime

from kafka import KafkaConsumer

log = logging.getLogger("legacy_consumer")

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS raw_metrics (
        machine_id TEXT, timestamp DATETIME, cpu_usage REAL, memory_usage REAL,
        disk_io_read REAL, disk_io_write REAL, net_io_sent REAL, net_io_recv REAL,
        PRIMARY KEY (machine_id, timestamp))""",
    """CREATE TABLE IF NOT EXISTS aggregated_metrics (
        timestamp DATETIME PRIMARY KEY, avg_cpu_usage REAL, avg_memory_usage REAL,
        avg_disk_io_read REAL, avg_disk_io_write REAL, avg_net_io_sent REAL,
        avg_net_io_recv REAL)""",
    """CREATE TABLE IF NOT EXISTS top_processes (
        timestamp DATETIME, process_name TEXT, cpu_usage REAL, memory_usage REAL,
        PRIMARY KEY (timestamp, process_name))""",
    """CREATE TABLE IF NOT EXISTS anomalies (
        timestamp DATETIME PRIMARY KEY, metric_type TEXT, value REAL, message TEXT)""",
]


def store(text, db):
    """Stores one message the way the legacy consumer does."""
    data = json.loads(text)
    machine_id = data.get("machine_id", "unknown")
    when = datetime.fromtimestamp(data.get("timestamp", time.time()))
    second = when.strftime("%Y-%m-%d %H:%M:%S")
    minute = when.replace(second=0).strftime("%Y-%m-%d %H:%M:%S")
    cpu = data.get("cpu_usage", 0.0)
    mem = data.get("memory_usage", 0.0)
    disk = data.get("disk_io", {})
    net = data.get("network_io", {})
    counters = (disk.get("read", 0), disk.get("write", 0), net.get("sent", 0), net.get("recv", 0))

    cur = db.cursor()
    cur.execute(
        "INSERT OR REPLACE INTO raw_metrics (machine_id, timestamp, cpu_usage, memory_usage,"
        " disk_io_read, disk_io_write, net_io_sent, net_io_recv) VALUES (?,?,?,?,?,?,?,?)",
        (machine_id, second, cpu, mem, *counters),
    )
    cur.execute(
        "INSERT OR REPLACE INTO aggregated_metrics (timestamp, avg_cpu_usage, avg_memory_usage,"
        " avg_disk_io_read, avg_disk_io_write, avg_net_io_sent, avg_net_io_recv)"
        " VALUES (?,?,?,?,?,?,?)",
        (minute, cpu, mem, *counters),
    )
    for proc in data.get("top_cpu_processes", [])[:5]:
        if isinstance(proc, dict):
            cur.execute(
                "INSERT OR REPLACE INTO top_processes (timestamp, process_name, cpu_usage,"
                " memory_usage) VALUES (?,?,?,?)",
                (minute, proc.get("name", "unknown"), proc.get("cpu_percent", 0.0),
                 proc.get("memory_percent", 0.0)),
            )
    for metric, value in (("CPU", cpu), ("Memory", mem)):
        if value > 80:
            message = f"High {metric} usage detected: {value:.1f}%"
            cur.execute(
                "INSERT OR REPLACE INTO anomalies (timestamp, metric_type, value, message)"
                " VALUES (?,?,?,?)",
                (minute, metric, value, message),
            )
            log.warning("ANOMALY: %s", message)
    db.commit()
    log.info("Processed metrics for %s at %s - CPU: %.1f%%, Memory: %.1f%%",
             machine_id, second, cpu, mem)


def wait_until_positioned(consumer, topic, ready_file, timeout=60.0):
    """Polls until every partition of `topic` is assigned and has a position,
    then writes `ready_file` with the positions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The first poll resolves the subscription and the "latest" offsets;
        # the topic is empty, so nothing is consumed here.
        for records in consumer.poll(timeout_ms=200).values():
            if records:
                raise RuntimeError("records arrived before the consumer was ready")
        parts = consumer.assignment()
        if parts and {p.partition for p in parts} == consumer.partitions_for_topic(topic):
            positions = {p.partition: consumer.position(p) for p in parts}
            with open(ready_file, "w") as f:
                json.dump(positions, f)
            log.info("ready: positions %s", positions)
            return
    raise RuntimeError(f"no partitions of {topic} assigned within {timeout} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", default="system_metrics")
    parser.add_argument("--db", required=True)
    parser.add_argument("--offset-reset", default="latest", choices=["latest", "earliest"])
    parser.add_argument("--ready-file")
    parser.add_argument("--idle-exit", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    db = sqlite3.connect(args.db)
    for statement in SCHEMA:
        db.execute(statement)
    db.commit()

    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=[args.brokers],
        auto_offset_reset=args.offset_reset,
        value_deserializer=lambda raw: raw.decode("utf-8"),
        consumer_timeout_ms=args.idle_exit * 1000 if args.idle_exit else float("inf"),
    )
    failed = False
    try:
        if args.ready_file:
            wait_until_positioned(consumer, args.topic, args.ready_file)
        for message in consumer:
            try:
                store(message.value, db)
            except Exception as e:  # one bad message: logged, the loop goes on
                log.error("Error processing message: %s", e)
                log.error("Message content: %s", message.value)
    except Exception as e:  # the loop itself failed: the legacy consumer stops here
        log.error("Error in consumer loop: %s", e)
        failed = True
    finally:
        consumer.close()
        db.close()
        log.info("Consumer closed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
