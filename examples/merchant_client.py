#!/usr/bin/env python3
"""A merchant back end calling the recharge gateway: signs requests exactly as the README's
"Merchant API" section says. Standard library only. Usage:

    python3 examples/merchant_client.py http://127.0.0.1:8080 demo demo-secret mobile.100 13800138000

With a sixth argument, the URL of an H5 page (examples/h5/index.html), it hands the order to the end user's
page instead of following it itself: it prints the page's link with the order's client secret in the fragment.

    python3 examples/merchant_client.py http://127.0.0.1:8080 demo demo-secret billing.code.demo 13800138000 \
        http://127.0.0.1:8081/index.html
"""
import hashlib
import hmac
import json
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def sign(app_secret: str, method: str, path: str, raw_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    string_to_sign = "\n".join([method, path, raw_query, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return hmac.new(app_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def call(base: str, app: str, app_secret: str, method: str, path: str, payload=None):
    body = b"" if payload is None else json.dumps(payload).encode()
    timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
    req = urllib.request.Request(base + path, data=body if method == "POST" else None, method=method, headers={
        "Content-Type": "application/json",
        "X-Recharge-App": app,
        "X-Recharge-Timestamp": timestamp,
        "X-Recharge-Nonce": nonce,
        "X-Recharge-Signature": sign(app_secret, method, path, "", timestamp, nonce, body),
    })
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def verify_notification(app_secret: str, headers, body: bytes) -> bool:
    """Checks a notification the gateway POSTed to your notify_url."""
    expected = hmac.new(app_secret.encode(), headers["X-Recharge-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Recharge-Signature"])


if __name__ == "__main__":
    base, app, app_secret, product, account = sys.argv[1:6]
    page = sys.argv[6] if len(sys.argv) > 6 else None
    order_no = "py-%d" % int(time.time() * 1000)
    status, view = call(base, app, app_secret, "POST", "/v1/orders",
                        {"merchant_order_no": order_no, "product_code": product, "account": account})
    client_secret = view.pop("client_secret", None)  # for the end user's page only: never log it
    print(status, view)
    if page and client_secret:
        query = urllib.parse.urlencode({"api": base, "order": view["order_id"]})
        print(page + "?" + query + "#" + urllib.parse.urlencode({"secret": client_secret}))
        sys.exit(0)
    while view.get("status") == "processing":
        time.sleep(0.5)
        status, view = call(base, app, app_secret, "GET", "/v1/orders/" + order_no)
    print(status, view)
