"""Signs a Slack delivery with Slack's own SDK (slack_sdk):

    python slack_sign.py SECRET TIMESTAMP < body

prints the headers to send, as a JSON object."""
import json
import sys

from slack_sdk.signature import SignatureVerifier

secret, timestamp = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read().decode("utf-8")
signature = SignatureVerifier(signing_secret=secret).generate_signature(timestamp=timestamp, body=body)
print(json.dumps({"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": timestamp}))
