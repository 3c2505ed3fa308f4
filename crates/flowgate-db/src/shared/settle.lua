-- The settle script: SharedState::adjust in Redis (see claim.rs), applying counter changes at
-- once.
--
-- KEYS: the counters. ARGV: per counter its delta, ttl in ms, whether an existing counter's expiry
-- is renewed (1 or 0), and its reservation member (`{id}:{amount}`, or empty).
-- A change with a member gives a reservation back (see claim.lua): it applies only while the
-- reservation is still held, and removes it, so a reservation that already expired, or a
-- settlement replayed twice, is not given back twice. A counter given back to 0 is removed.
-- Any other change adds its delta and sets the expiry (when new, or always when renewed).
for i, c in ipairs(KEYS) do
  local p = (i - 1) * 4
  local delta, ttl, refresh, member = ARGV[p + 1], ARGV[p + 2], ARGV[p + 3], ARGV[p + 4]
  if member ~= '' then
    if redis.call('ZREM', c .. ':d', member) == 1 then
      if redis.call('INCRBY', c, delta) <= 0 then
        redis.call('DEL', c)
        if redis.call('ZCARD', c .. ':d') == 0 then redis.call('DEL', c .. ':d') end
      end
    end
  else
    redis.call('INCRBY', c, delta)
    if refresh == '1' then
      redis.call('PEXPIRE', c, ttl)
    else
      redis.call('PEXPIRE', c, ttl, 'NX')
    end
  end
end
return 0
