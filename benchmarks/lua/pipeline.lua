-- Pipelining for wrk: each write is PIPELINE_DEPTH copies of one GET, sent back to back; wrk
-- counts every response. Depth comes from the environment (the benchmark driver sets it).
local depth = tonumber(os.getenv("PIPELINE_DEPTH") or "16")
local batch

function init(args)
  local single = wrk.format("GET", wrk.path)
  local copies = {}
  for i = 1, depth do
    copies[i] = single
  end
  batch = table.concat(copies)
end

function request()
  return batch
end
