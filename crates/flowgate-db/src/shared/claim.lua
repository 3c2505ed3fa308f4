-- The claim script: SharedState::claim in Redis, for a batch of requests at once (see claim.rs).
--
-- KEYS: per bundle, its counters, then its budgets' settled counters.
-- ARGV: the number of bundles, the time (unix ms); per bundle the number of counters n, of settled
-- counters m and of requests k, then per counter: kind (w, t, f, b), limit, ttl in ms and the KEYS
-- index of its settled counter (0 when none), then per request its n deltas and its reservation
-- id.
-- Returns per request: status (0 admitted, i rejected at claim i, -i: claim i's settled counter
-- does not exist and nothing was applied), then per claim its value (after the claim when
-- admitted, as found otherwise), settled amount and the amount taken (the delta, except for a
-- budget, which takes what is left of it when that is less; 0 when rejected).
--
-- Reservations (kinds f and b) expire one by one: next to the counter, the sorted set
-- `{counter}:d` holds one member `{id}:{amount}` per admitted request, scored by its deadline
-- (time + ttl). Each claim first takes the members past their deadline out of the counter, so a
-- reservation that is never given back (its process died, its settlement was lost) stops
-- counting at its deadline, however busy the counter. Settling removes the member (settle.lua).
local out = {}
local now = tonumber(ARGV[2])
local a = 3
local kb = 0

-- Takes the expired reservations of counter `c` out of it.
local function expire(c)
  local z = c .. ':d'
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, 256)
  if #gone == 0 then return end
  local sum = 0
  for _, member in ipairs(gone) do
    sum = sum + (tonumber(string.match(member, ':(%-?%d+)$')) or 0)
    redis.call('ZREM', z, member)
  end
  if redis.call('DECRBY', c, sum) <= 0 then redis.call('DEL', c) end
end

for _ = 1, tonumber(ARGV[1]) do
  local n, m, k = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local kind, limit, ttl, settled = {}, {}, {}, {}
  local unloaded = 0
  for i = 1, n do
    local p = a + 3 + (i - 1) * 4
    kind[i], limit[i], ttl[i], settled[i] = ARGV[p], tonumber(ARGV[p + 1]), ARGV[p + 2], 0
    if kind[i] == 'f' or kind[i] == 'b' then expire(KEYS[kb + i]) end
    local s = tonumber(ARGV[p + 3])
    if s > 0 and unloaded == 0 then
      local found = redis.call('GET', KEYS[s])
      if found then settled[i] = tonumber(found) else unloaded = i end
    end
  end
  local d = a + 3 + 4 * n
  local delta, id = {}, {}
  for j = 1, k do
    delta[j] = {}
    local r = d + (j - 1) * (n + 1)
    for i = 1, n do delta[j][i] = tonumber(ARGV[r + i - 1]) end
    id[j] = ARGV[r + n]
  end
  -- What a claim of d on counter i, now at cur, takes: d, or for a budget what is left of it
  -- when less (a budget admits while anything is left); nil when it does not fit.
  local function take(i, cur, d)
    if limit[i] <= 0 then return d end
    if kind[i] == 't' then
      if cur < limit[i] then return d end
      return nil
    end
    if kind[i] == 'b' then
      local room = limit[i] - settled[i] - cur
      if room > 0 then return math.min(d, room) end
      return nil
    end
    if cur + d <= limit[i] then return d end
    return nil
  end
  local status, value, taken = {}, {}, {}
  if unloaded > 0 then
    for j = 1, k do
      status[j], value[j], taken[j] = -unloaded, {}, {}
      for i = 1, n do value[j][i], taken[j][i] = 0, 0 end
    end
  else
    local sum, after, all = {}, {}, true
    for i = 1, n do
      sum[i] = 0
      for j = 1, k do sum[i] = sum[i] + delta[j][i] end
      after[i] = redis.call('INCRBY', KEYS[kb + i], sum[i])
      -- The whole bundle fits when its last request fits whole after all the others.
      all = all and take(i, after[i] - delta[k][i], delta[k][i]) == delta[k][i]
    end
    local final = after
    if all then
      local later = {}
      for i = 1, n do later[i] = 0 end
      for j = k, 1, -1 do
        status[j], value[j], taken[j] = 0, {}, {}
        for i = 1, n do
          value[j][i] = after[i] - later[i]
          taken[j][i] = delta[j][i]
          later[i] = later[i] + delta[j][i]
        end
      end
    else
      local current = {}
      for i = 1, n do current[i] = after[i] - sum[i] end
      for j = 1, k do
        status[j], taken[j] = 0, {}
        for i = 1, n do
          local t = take(i, current[i], delta[j][i])
          if t == nil then
            status[j] = i
            break
          end
          taken[j][i] = t
        end
        if status[j] == 0 then
          for i = 1, n do current[i] = current[i] + taken[j][i] end
        else
          for i = 1, n do taken[j][i] = 0 end
        end
        value[j] = {}
        for i = 1, n do value[j][i] = current[i] end
      end
      final = current
      for i = 1, n do
        if current[i] ~= after[i] then redis.call('DECRBY', KEYS[kb + i], after[i] - current[i]) end
      end
    end
    for i = 1, n do
      local c = KEYS[kb + i]
      local added = final[i] - (after[i] - sum[i])
      if final[i] == 0 then
        redis.call('DEL', c)
        if kind[i] == 'f' or kind[i] == 'b' then redis.call('DEL', c .. ':d') end
      elseif kind[i] == 'w' or kind[i] == 't' then
        if final[i] == added then redis.call('PEXPIRE', c, ttl[i], 'NX') end
      elseif added ~= 0 then
        -- One member per admitted request's reservation, due at its own deadline; the keys
        -- live as long as their latest reservation.
        local z = c .. ':d'
        local deadline = now + tonumber(ttl[i])
        for j = 1, k do
          if status[j] == 0 and taken[j][i] ~= 0 then
            redis.call('ZADD', z, deadline, id[j] .. ':' .. string.format('%d', taken[j][i]))
          end
        end
        -- Extended, never shortened (a claim with a shorter ttl must not cut the others short).
        for _, key in ipairs({c, z}) do
          redis.call('PEXPIRE', key, ttl[i], 'NX')
          redis.call('PEXPIRE', key, ttl[i], 'GT')
        end
      end
    end
  end
  for j = 1, k do
    out[#out + 1] = status[j]
    for i = 1, n do
      out[#out + 1] = value[j][i]
      out[#out + 1] = settled[i]
      out[#out + 1] = taken[j][i]
    end
  end
  a = d + k * (n + 1)
  kb = kb + n + m
end
return out
