-- Replays pre-generated requests (one per line: method, path, body, then header name=value
-- pairs, tab-separated), so wrk spends no time building or signing them.
local requests = {}
local next_index = 0

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do fields[#fields + 1] = field end
  return fields
end

init = function(args)
  for line in io.lines(args[1]) do
    local f = split(line)
    local headers = { ["Content-Type"] = "application/json" }
    for i = 4, #f do
      local name, value = f[i]:match("^([^=]+)=(.*)$")
      headers[name] = value
    end
    requests[#requests + 1] = wrk.format(f[1], f[2], headers, f[3])
  end
end

request = function()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
