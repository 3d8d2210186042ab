# import_legacy_history.py DB BROKER [TOPIC] -- publishes raw_metrics as legacy messages
import json, sqlite3, sys
from datetime import datetime
from kafka import KafkaProducer

db, broker = sys.argv[1], sys.argv[2]
topic = sys.argv[3] if len(sys.argv) > 3 else "system_metrics"
producer = KafkaProducer(bootstrap_servers=[broker], acks="all",
                         value_serializer=lambda v: json.dumps(v).encode("utf-8"))
rows = sqlite3.connect(db).execute(
    "SELECT machine_id, timestamp, cpu_usage, memory_usage, disk_io_read, disk_io_write,"
    " net_io_sent, net_io_recv FROM raw_metrics ORDER BY timestamp")
n = 0
for machine, ts, cpu, mem, dr, dw, ns, nr in rows:
    producer.send(topic, {
        "machine_id": machine,
        # the consumer stored local time to the second: back to epoch seconds
        "timestamp": datetime.strptime(ts, "%Y-%m-%d %H:%M:%S").timestamp(),
        "cpu_usage": cpu, "memory_usage": mem,
        "disk_io": {"read": int(dr), "write": int(dw)},
        "network_io": {"sent": int(ns), "recv": int(nr)},
        "top_cpu_processes": [], "top_mem_processes": [],
    })
    n += 1
producer.flush()
print(f"published {n} samples")
