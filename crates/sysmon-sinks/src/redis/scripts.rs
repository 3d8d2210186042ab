//! The Lua scripts the sink runs server-side (loaded with `SCRIPT LOAD` at the
//! head of every pipeline, then called with `EVALSHA`, so a restarted Redis with
//! an empty script cache never sees a `NOSCRIPT`).

use std::sync::LazyLock;

/// One machine's part of a batch.
///
/// KEYS: 1 series, 2 latest, 3 top, 4 last_seen, 5 hostnames.
/// ARGV: 1 machine id, 2 time cutoff in ms (older samples are trimmed), 3 series
/// length bound, 4 TTL in ms, 5 newest timestamp (s), 6 newest timestamp (ms),
/// 7 newest snapshot JSON, 8 top-processes JSON, 9 host name, 10 `1` when a host
/// name is given, then pairs (timestamp in ms, binary snapshot).
///
/// A sample replaces the one with the same millisecond (like SQLite's primary
/// key); latest/top/last_seen only move forward in time (compared by
/// millisecond, a tie replaces), so replays and backfills in any order
/// converge. Returns 1 when the latest state moved.
pub(crate) const WRITE_MACHINE: &str = r#"
local series, latest, top, seen, hosts = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
for i = 11, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', series, ARGV[i], ARGV[i])
  redis.call('ZADD', series, ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYSCORE', series, '-inf', '(' .. ARGV[2])
redis.call('ZREMRANGEBYRANK', series, 0, -(tonumber(ARGV[3]) + 1))
redis.call('PEXPIRE', series, ARGV[4])
local cur = redis.call('ZSCORE', seen, ARGV[1])
if cur and math.floor(tonumber(cur) * 1000 + 0.5) > tonumber(ARGV[6]) then
  return 0
end
redis.call('SET', latest, ARGV[7], 'PX', ARGV[4])
redis.call('SET', top, ARGV[8], 'PX', ARGV[4])
redis.call('ZADD', seen, ARGV[5], ARGV[1])
if ARGV[10] == '1' then
  redis.call('HSET', hosts, ARGV[1], ARGV[9])
end
return 1
"#;

/// The head of every batch: bookkeeping and pruning.
///
/// KEYS: 1 meta, 2 last_seen, 3 hostnames.
/// ARGV: 1 now (s), 2 TTL in ms, 3 raise `complete_since` to at least this
/// (empty: no change), 4 last_seen cutoff (s).
///
/// A missing `complete_since` means Redis holds nothing this writer can vouch
/// for (a new or emptied Redis): it becomes `now`. Machines last seen before the
/// cutoff leave `last_seen` and `hostnames`.
///
/// Returns `{existed (0/1), previous written_at or '', complete_since before,
/// complete_since after}`.
pub(crate) const BATCH_HEAD: &str = r#"
local meta, seen, hosts = KEYS[1], KEYS[2], KEYS[3]
local before = redis.call('HGET', meta, 'complete_since')
local prev = redis.call('HGET', meta, 'written_at')
local existed = 1
if not before then
  existed = 0
  before = ''
  redis.call('HSET', meta, 'complete_since', ARGV[1])
elseif ARGV[3] ~= '' and tonumber(ARGV[3]) > tonumber(before) then
  redis.call('HSET', meta, 'complete_since', ARGV[3])
end
redis.call('HSET', meta, 'written_at', ARGV[1])
redis.call('PEXPIRE', meta, ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', seen, '-inf', '(' .. ARGV[4])
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', seen, '-inf', '(' .. ARGV[4])
  for i = 1, #gone, 500 do
    redis.call('HDEL', hosts, unpack(gone, i, math.min(i + 499, #gone)))
  end
end
return {existed, prev or '', before, redis.call('HGET', meta, 'complete_since')}
"#;

/// Lowers `complete_since` after a backfill, unless someone changed it since.
///
/// KEYS: 1 meta. ARGV: 1 expected current value, 2 new value. Returns 1 when set.
pub(crate) const LOWER_COMPLETE_SINCE: &str = r#"
if redis.call('HGET', KEYS[1], 'complete_since') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'complete_since', ARGV[2])
  return 1
end
return 0
"#;

/// A script and its SHA-1, computed once.
pub(crate) struct Loaded {
    pub(crate) source: &'static str,
    pub(crate) sha: String,
}

fn load(source: &'static str) -> Loaded {
    Loaded {
        source,
        sha: ::redis::Script::new(source).get_hash().to_string(),
    }
}

pub(crate) static WRITE_MACHINE_SCRIPT: LazyLock<Loaded> = LazyLock::new(|| load(WRITE_MACHINE));
pub(crate) static BATCH_HEAD_SCRIPT: LazyLock<Loaded> = LazyLock::new(|| load(BATCH_HEAD));
pub(crate) static LOWER_COMPLETE_SINCE_SCRIPT: LazyLock<Loaded> =
    LazyLock::new(|| load(LOWER_COMPLETE_SINCE));
