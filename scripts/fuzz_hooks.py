"""schemathesis hooks of scripts/fuzz.sh. With SECKILL_FUZZ_WEBHOOK_SECRET set, every payment
notice the fuzzer generates is signed the way a payment provider signs it, so that the fuzzer
reaches the webhook's handler and not only its signature check: the body is serialized here,
once, and the signature covers exactly those bytes."""

import hashlib
import hmac
import json
import os
import time

import schemathesis

SECRET = os.environ.get("SECKILL_FUZZ_WEBHOOK_SECRET", "").encode()


@schemathesis.hook
def before_call(context, case, kwargs):
    if not SECRET or case.path != "/v1/payments" or case.method.upper() != "POST":
        return
    body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    case.body = body
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    case.headers = {**(case.headers or {}), "Seckill-Signature": f"t={timestamp},v1={digest}"}
