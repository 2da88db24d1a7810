"""Schemathesis against a running local stack, every request signed as a merchant signs it.

    python tools/schemathesis/run.py BASE_URL [EXAMPLES_PER_OPERATION]

Generates requests from docs/openapi.yaml for every operation (valid and invalid bodies, paths and headers
as the spec allows), signs each exactly as sent (the signature covers the path and the body bytes, so the
signing happens on the prepared request), and checks every answer: no 5xx, and the status, content type
and body conform to the spec. Prints the number of cases and exits non-zero on any failure.
"""
import hashlib
import hmac
import json
import os
import secrets
import sys
import time

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

# positive_data_acceptance is left out on purpose: the spec cannot list the catalog's products (deployment
# data), so a schema-valid product_code is rightly answered 422 product_unavailable.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]

BASE = sys.argv[1].rstrip("/")
EXAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else 50
APPS = {"demo": "demo-secret", "ops": "ops-secret"}
SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.yaml")


def signed_headers(app, secret, method, path, query, body: bytes):
    ts, nonce = str(int(time.time())), secrets.token_hex(12)
    sts = "\n".join([method, path, query, ts, nonce, hashlib.sha256(body).hexdigest()])
    return {
        "X-Recharge-App": app,
        "X-Recharge-Timestamp": ts,
        "X-Recharge-Nonce": nonce,
        "X-Recharge-Signature": hmac.new(secret.encode(), sts.encode(), hashlib.sha256).hexdigest(),
    }


def main() -> int:
    schema = schemathesis.openapi.from_path(SPEC)
    session = requests.Session()
    counts = {"cases": 0, "by_status": {}}
    failures = []
    for result, mode in [(r, m) for r in schema.get_all_operations() for m in GenerationMode]:
        operation = result.ok()
        app = "ops" if operation.path == "/v1/balances" else "demo"
        if operation.path == "/v1/balances" and mode == GenerationMode.NEGATIVE:
            # No parameter and no body to get wrong: its "negative" cases differ only in the auth headers,
            # which the signing here replaces with valid ones (the auth refusals are e2e tests of their own).
            continue

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            kwargs = case.as_transport_kwargs(base_url=BASE)
            body = kwargs.get("data")
            if "json" in kwargs:
                body = json.dumps(kwargs["json"], ensure_ascii=False).encode()
            if isinstance(body, str):
                body = body.encode()
            body = body or b""
            req = requests.Request(kwargs["method"], kwargs["url"], params=kwargs.get("params"), data=body,
                                   headers={"Content-Type": "application/json"}).prepare()
            path, _, query = req.path_url.partition("?")
            req.headers.update(signed_headers(app, APPS[app], req.method, path, query, body))
            response = session.send(req, timeout=30)
            counts["cases"] += 1
            counts["by_status"][response.status_code] = counts["by_status"].get(response.status_code, 0) + 1
            problems = []
            if response.status_code >= 500:
                problems.append(f"server error {response.status_code}: {response.text[:200]}")
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as e:  # a conformance failure against the spec
                text = str(e).strip()
                problems.append(" | ".join(l.strip() for l in text.splitlines()[:6]) or type(e).__name__)
            if problems:
                failures.append(f"{req.method} {req.path_url}: {'; '.join(problems)}")

        run()
        print(f"{operation.method.upper()} {operation.path} ({mode.value}): done", flush=True)
    print(json.dumps(counts, sort_keys=True))
    for f in failures[:30]:
        print("FAIL", f)
    print(f"schemathesis: {counts['cases']} cases, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
