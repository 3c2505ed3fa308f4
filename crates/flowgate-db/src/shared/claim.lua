-- The claim script: SharedState::claim in Redis, for a batch of requests at once (see claim.rs).
--
-- KEYS: per bundle, its counters, then its budgets' settled counters.
-- ARGV: the number of bundles; per bundle the number of counters n, of settled counters m and of
-- requests k, then per counter: kind (w, t, f, b), limit, ttl in ms and the KEYS index of its
-- settled counter (0 when none), then per request its n deltas.
-- Returns per request: status (0 admitted, i rejected at claim i, -i: claim i's settled counter
-- does not exist and nothing was applied), then per claim its value (after the claim when
-- admitted, as found otherwise), settled amount and the amount taken (the delta, except for a
-- budget, which takes what is left of it when that is less; 0 when rejected).
local out = {}
local a = 2
local kb = 0
for _ = 1, tonumber(ARGV[1]) do
  local n, m, k = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local kind, limit, ttl, settled = {}, {}, {}, {}
  local unloaded = 0
  for i = 1, n do
    local p = a + 3 + (i - 1) * 4
    kind[i], limit[i], ttl[i], settled[i] = ARGV[p], tonumber(ARGV[p + 1]), ARGV[p + 2], 0
    local s = tonumber(ARGV[p + 3])
    if s > 0 and unloaded == 0 then
      local found = redis.call('GET', KEYS[s])
      if found then settled[i] = tonumber(found) else unloaded = i end
    end
  end
  local d = a + 3 + 4 * n
  local delta = {}
  for j = 1, k do
    delta[j] = {}
    for i = 1, n do delta[j][i] = tonumber(ARGV[d + (j - 1) * n + i - 1]) end
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
      local added = final[i] - (after[i] - sum[i])
      if final[i] == 0 then
        redis.call('DEL', KEYS[kb + i])
      elseif kind[i] == 'w' or kind[i] == 't' then
        if final[i] == added then redis.call('PEXPIRE', KEYS[kb + i], ttl[i], 'NX') end
      elseif added ~= 0 then
        redis.call('PEXPIRE', KEYS[kb + i], ttl[i])
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
  a = d + k * n
  kb = kb + n + m
end
return out
