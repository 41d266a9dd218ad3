-- Counts responses per worker process: the app's /pid route names its pid in x-worker-pid.
-- Used for a short probe after the workers2 measured run (response() slows wrk down, so the
-- measured run itself does not use it). done() prints one "worker-pid PID COUNT" line per worker.
local threads = {}
counts = {}

function setup(thread)
   table.insert(threads, thread)
end

function response(status, headers, body)
   for name, value in pairs(headers) do
      if string.lower(name) == "x-worker-pid" then
         counts[value] = (counts[value] or 0) + 1
      end
   end
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      for pid, n in pairs(thread:get("counts")) do
         total[pid] = (total[pid] or 0) + n
      end
   end
   for pid, n in pairs(total) do
      io.write(string.format("worker-pid %s %d\n", pid, n))
   end
end
