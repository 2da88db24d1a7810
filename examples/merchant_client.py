#!/usr/bin/env python3
"""A merchant back end calling the recharge gateway: signs requests exactly as docs/merchant-api.md §1
says. Standard library only. Usage:

    python3 examples/merchant_client.py http://127.0.0.1:8080 demo demo-secret mobile.100 13800138000

Options: --extra KEY=VALUE (repeatable: the order's `extra`, e.g. --extra area=江苏 for electricity),
--code CODE (the verification code of a carrier-billing order that asks for one; without it the client asks
on the terminal), --notify-url URL, --order-no NO, --timeout SECONDS (default 120: give up following an
order still processing after that long; exit status 2). The base URL may end with a slash.

With a sixth argument, the URL of an H5 page (examples/h5/index.html), it hands the order to the end user's
page instead of following it itself: it prints the page's link with the order's client secret in the fragment.

    python3 examples/merchant_client.py http://127.0.0.1:8080 demo demo-secret billing.code.demo 13800138000 \
        http://127.0.0.1:8081/index.html

Exit status: 0 when the order reached a final status (succeeded, failed, ...), 1 on a refused request, 2 when
it was still processing at the timeout.
"""
import argparse
import hashlib
import hmac
import json
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

FINAL = {"succeeded", "failed", "partially_succeeded", "reversed"}


def sign(app_secret: str, method: str, path: str, raw_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    string_to_sign = "\n".join([method, path, raw_query, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return hmac.new(app_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def call(base: str, app: str, app_secret: str, method: str, path: str, payload=None, timeout: float = 30):
    """One signed request. `path` is what is signed, so it is joined to the base URL without a double slash
    (a base of "https://gw.example.com/" must not make the signed path "//v1/orders")."""
    body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
    timestamp, nonce = str(int(time.time())), secrets.token_hex(12)
    req = urllib.request.Request(base.rstrip("/") + path, data=body if method == "POST" else None,
                                 method=method, headers={
        "Content-Type": "application/json",
        "X-Recharge-App": app,
        "X-Recharge-Timestamp": timestamp,
        "X-Recharge-Nonce": nonce,
        "X-Recharge-Signature": sign(app_secret, method, path, "", timestamp, nonce, body),
    })
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def verify_notification(app_secret: str, headers, body: bytes) -> bool:
    """Checks a notification the gateway POSTed to your notify_url."""
    expected = hmac.new(app_secret.encode(), headers["X-Recharge-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Recharge-Signature"])


def pair(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def main() -> int:
    p = argparse.ArgumentParser(description="Place one order with the recharge gateway and follow it.")
    p.add_argument("base")
    p.add_argument("app")
    p.add_argument("app_secret")
    p.add_argument("product")
    p.add_argument("account")
    p.add_argument("page", nargs="?", help="an H5 page to hand the order to (prints its link)")
    p.add_argument("--extra", type=pair, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--code", help="verification code, if the order asks for one")
    p.add_argument("--notify-url")
    p.add_argument("--order-no")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to follow the order (default 120)")
    a = p.parse_args()

    order_no = a.order_no or "py-%d" % int(time.time() * 1000)
    order = {"merchant_order_no": order_no, "product_code": a.product, "account": a.account}
    if a.extra:
        order["extra"] = dict(a.extra)
    if a.notify_url:
        order["notify_url"] = a.notify_url
    status, view = call(a.base, a.app, a.app_secret, "POST", "/v1/orders", order)
    client_secret = view.pop("client_secret", None)  # for the end user's page only: never log it
    print(status, json.dumps(view, ensure_ascii=False))
    if status not in (200, 201):
        return 1
    if a.page and client_secret:
        query = urllib.parse.urlencode({"api": a.base.rstrip("/"), "order": view["order_id"]})
        print(a.page + "?" + query + "#" + urllib.parse.urlencode({"secret": client_secret}))
        return 0

    deadline = time.monotonic() + a.timeout
    code_sent = False
    while view.get("status") not in FINAL:
        action = view.get("next_action") or {}
        if view.get("status") == "action_required" and action.get("type") == "enter_verification_code" \
                and not code_sent:
            code = a.code or input("verification code: ").strip()
            status, view = call(a.base, a.app, a.app_secret, "POST",
                                "/v1/orders/%s/verification" % urllib.parse.quote(order_no, safe=""),
                                {"code": code})
            code_sent = True
            print(status, json.dumps(view, ensure_ascii=False))
            if status != 200:
                return 1
            continue
        if time.monotonic() >= deadline:
            print("still %s after %.0f s; giving up (the order goes on: GET it later, or wait for the notification)"
                  % (view.get("status"), a.timeout), file=sys.stderr)
            return 2
        time.sleep(0.5)
        status, view = call(a.base, a.app, a.app_secret, "GET",
                            "/v1/orders/" + urllib.parse.quote(order_no, safe=""))
    print(status, json.dumps(view, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
