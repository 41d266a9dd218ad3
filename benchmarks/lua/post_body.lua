-- A POST with a body of POST_BODY_BYTES bytes (the benchmark driver sets it); wrk adds
-- content-length itself. Used for the streamed echo scenario.
local size = tonumber(os.getenv("POST_BODY_BYTES") or "1048576")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("e", size)
