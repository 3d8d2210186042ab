//! The Lua scripts the sink runs server-side (loaded with `SCRIPT LOAD` at the
//! head of every pipeline, then called with `EVALSHA`, so a restarted Redis with
//! an empty script cache never sees a `NOSCRIPT`).

use std::sync::LazyLock;

/// Commits a group of machines' part of a batch. The big payloads never pass
/// through Lua (Redis hashes every byte of every Lua string): the pipeline has
/// already added the samples to each series and staged the newest snapshot
/// (binary, the same bytes as its series member) in a per-writer temporary key
/// (with the final TTL) with plain commands; this script moves the staged key
/// into place when it is not older than what is there (a `RENAME`, no copy,
/// keeping the TTL), updates `last_seen` (one `ZMSCORE` and one `ZADD` for all
/// the machines of the call: Redis 6.2 or newer) and, when needed, `hostnames`; when
/// the machine's newest sample enters a new upkeep period (or the machine is
/// new to `last_seen`) it trims the series by count and by time and refreshes
/// its TTL, and it trims by count whenever the writer asks.
///
/// KEYS: 1 last_seen, 2 hostnames, then per machine: series, latest, staged latest.
/// ARGV: 1 time cutoff in ms (older samples are trimmed), 2 series length
/// bound, 3 TTL in ms, 4 upkeep period in ms, then per machine: machine id,
/// newest timestamp (s), newest timestamp (ms), host name, and four flag
/// characters (`1`/`0`): a host name is given, the writer has not written this
/// host name before, trim by count now, the latest state was `SET` directly
/// (nothing staged: the writer knew its samples to be newer than anything it
/// wrote; if another writer stored a newer one meanwhile, the latest state is
/// restored from the series' newest member).
///
/// latest/last_seen only move forward in time (compared by millisecond, a
/// tie replaces, as SQLite keeps the last write of a millisecond), so replays
/// and backfills in any order converge. Returns how many machines' latest
/// state moved.
pub(crate) const COMMIT_MACHINES: &str = r#"
local seen, hosts = KEYS[1], KEYS[2]
local cutoff, maxlen, ttl = '(' .. ARGV[1], -(tonumber(ARGV[2]) + 1), ARGV[3]
local period = tonumber(ARGV[4])
-- One ZMSCORE and one ZADD for all the machines of the call (each machine
-- appears once per call).
local ids = {}
for a = 5, #ARGV, 5 do
  ids[#ids + 1] = ARGV[a]
end
local scores = redis.call('ZMSCORE', seen, unpack(ids))
local newer = {}
local moved, k, i = 0, 3, 1
for a = 5, #ARGV, 5 do
  local series, latest, staged = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local id, newest_ms, flags = ARGV[a], tonumber(ARGV[a + 2]), ARGV[a + 4]
  local cur = scores[i]
  local cur_ms = cur and math.floor(tonumber(cur) * 1000 + 0.5)
  local upkeep = (not cur_ms) or math.floor(cur_ms / period) ~= math.floor(newest_ms / period)
  if upkeep or string.byte(flags, 3) == 49 then
    redis.call('ZREMRANGEBYRANK', series, 0, maxlen)
  end
  local direct = string.byte(flags, 4) == 49
  if cur_ms and cur_ms > newest_ms then
    -- An older batch (replay, backfill): its samples are in; the latest state stays.
    if direct then
      -- Written directly over a newer one: the series' newest member is the truth.
      local top = redis.call('ZRANGE', series, -1, -1)
      if top[1] then
        redis.call('SET', latest, top[1], 'PX', ttl)
      end
    else
      redis.call('DEL', staged)
    end
    redis.call('PEXPIRE', series, ttl, 'NX')
  else
    if upkeep then
      redis.call('ZREMRANGEBYSCORE', series, '-inf', cutoff)
      redis.call('PEXPIRE', series, ttl)
    else
      -- A series this batch created anew (its old members all replaced or
      -- trimmed, or a repair's) has no expiry yet: give it one (O(1)).
      redis.call('PEXPIRE', series, ttl, 'NX')
    end
    if not direct then
      redis.call('RENAME', staged, latest)
    end
    newer[#newer + 1] = ARGV[a + 1]
    newer[#newer + 1] = id
    if string.byte(flags, 1) == 49 and ((not cur_ms) or string.byte(flags, 2) == 49) then
      redis.call('HSET', hosts, id, ARGV[a + 3])
    end
    moved = moved + 1
  end
  k, i = k + 3, i + 1
end
if #newer > 0 then
  redis.call('ZADD', seen, unpack(newer))
end
return moved
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

pub(crate) static COMMIT_MACHINES_SCRIPT: LazyLock<Loaded> =
    LazyLock::new(|| load(COMMIT_MACHINES));
pub(crate) static BATCH_HEAD_SCRIPT: LazyLock<Loaded> = LazyLock::new(|| load(BATCH_HEAD));
pub(crate) static LOWER_COMPLETE_SINCE_SCRIPT: LazyLock<Loaded> =
    LazyLock::new(|| load(LOWER_COMPLETE_SINCE));
