-- wrk script: POST the documented payload with the bench token.
wrk.method = "POST"
wrk.body = '{"customerName": "John Doe", "orderNumber": "123456", "productCode": "ABC123"}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "bench")
