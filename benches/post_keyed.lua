-- wrk script: POST the documented payload with the bench token and a new
-- idempotency key on every request.
local counter = 0
local prefix = tostring(os.time()) .. "-" .. tostring(math.random(1000000))
wrk.method = "POST"
wrk.body = '{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "bench")
request = function()
  counter = counter + 1
  wrk.headers["idempotency-key"] = prefix .. "-" .. counter
  return wrk.format()
end
