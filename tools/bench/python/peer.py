"""The Python 3 peer of a recharge function's cold start, for `make bench`.

It does the init a boto3 handler of the same function would do: a DynamoDB client, a Secrets Manager client and
one secret read (the merchant secret named by PEER_SECRET_ID); then it serves the Lambda runtime API loop
(AWS_LAMBDA_RUNTIME_API) the way the Python runtime's bootstrap does, answering each event with a 200. The
bench measures from exec to this process's first `next` call.
"""

import json
import os
import urllib.request

import boto3

dynamodb = boto3.client("dynamodb")
secrets = boto3.client("secretsmanager")
secret = json.loads(secrets.get_secret_value(SecretId=os.environ["PEER_SECRET_ID"])["SecretString"])
if "app_secret" not in secret:
    raise SystemExit("the peer's secret has no app_secret")

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as event:
        request_id = event.headers["Lambda-Runtime-Aws-Request-Id"]
        event.read()
    answer = json.dumps({"statusCode": 200, "body": "ok"}).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", data=answer, method="POST")).read()
