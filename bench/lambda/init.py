"""Init time of a Lambda function under cargo-lambda's Runtime API emulator.

Starts `cargo lambda watch --only-lambda-apis` (the emulated Runtime API and function URL), then, for
each run, starts the function's binary as Lambda would (AWS_LAMBDA_RUNTIME_API pointing at the
emulator) with every AWS client the deployed function builds (DynamoDB store and limiter, S3 blobs,
SQS jobs, the model key read from SSM, a Bedrock model; all on moto at AWS_ENDPOINT_URL) and
embedding configured as in AWS: CONVERSA_EMBEDDER=lambda, the embedding function's binary (--embed-bin)
polling a second emulator, whose Invoke API the chat function calls (AWS_ENDPOINT_URL_LAMBDA); the
embedding function loads the model on its first invocation. It sends
`GET /api/models` the moment the process is spawned: the emulator holds the request until the
function polls for its first invocation. Measured per run:

  first   spawn -> the first response (init + one invocation)
  warm    the same request again, on the same instance (one invocation)
  ready   spawn -> the function's first request to the Runtime API (its poll for the first
          invocation, seen by a relay in front of the emulator): init, process start to ready
  init    first - warm: the older, noisier estimate of the same

and, once per run, a chat turn with memory on (the question is embedded by a fresh embedding
function): the time its first invocation spent loading the model, from its own log line. Prints the
medians.
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAi(BaseHTTPRequestHandler):
    """A model that answers every chat completion with three streamed words."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for word in ["Dogs ", "on ", "Fridays."]:
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())


class FirstPoll:
    """A TCP relay in front of the emulated Runtime API that notes when the function first sends it
    anything: a Lambda runtime's first request is its poll for the first invocation
    (`GET …/runtime/invocation/next`), sent the moment init is over. So `ready - spawn` is init,
    process start to ready for the first invocation, without the emulator's own routing delays
    (which make a warm request take 2-113 ms and the `first - warm` estimate noisy)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.first = None
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        self.first = None

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b, note in ((conn, upstream, True), (upstream, conn, False)):
                threading.Thread(target=self._pump, args=(a, b, note), daemon=True).start()

    def _pump(self, src, dst, note):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if note and self.first is None:
                    self.first = time.monotonic()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.status, r.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--embed-bin", required=True)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--key", choices=["ssm", "env"], default="ssm",
                    help="the model key read from SSM at init, as deployed (default), or given in "
                         "OPENAI_API_KEY: what the SSM read costs init")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    ddb = boto3.client("dynamodb")
    table = f"init-{tag}"
    s = "S"
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": s} for n in ["pk", "sk", "gsi1pk", "gsi1sk"]],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                                               {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}])
    bucket = f"init-{tag}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    queue = boto3.client("sqs").create_queue(QueueName=f"init-{tag}")["QueueUrl"]
    parameter = f"/conversa/init-{tag}/openai-api-key"
    boto3.client("ssm").put_parameter(Name=parameter, Value="test-key", Type="SecureString")

    fake_port = free_port()
    fake = ThreadingHTTPServer(("127.0.0.1", fake_port), FakeOpenAi)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    models = [
        {"id": "m", "provider": "openai", "model": "m", "base_url": f"http://127.0.0.1:{fake_port}/v1"},
        {"id": "nova", "provider": "bedrock", "model": "amazon.nova-micro-v1:0", "region": "us-east-1"},
    ]

    def emulator_on(port):
        process = subprocess.Popen(
            ["cargo", "lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1",
             "--invoke-port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return process
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("the emulator did not start")
                time.sleep(0.1)

    port, embed_port = free_port(), free_port()
    emulator = emulator_on(port)
    embed_emulator = emulator_on(embed_port)
    runtime = FirstPoll(port)
    embed_env = dict(os.environ)
    embed_env.update({
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
        "AWS_LAMBDA_FUNCTION_NAME": "_",
        "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{embed_port}/.rt",
        "RUST_LOG": "info",
        "CONVERSA_EMBED_MODEL": args.model_dir,
    })

    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_NAME": "_",
        "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{runtime.port}/.rt",
        "RUST_LOG": "info",
        "CONVERSA_STORE": "dynamodb",
        "CONVERSA_DYNAMODB_TABLE": table,
        "CONVERSA_BLOBS": "s3",
        "CONVERSA_S3_BUCKET": bucket,
        "CONVERSA_LIMITER": "dynamodb",
        "CONVERSA_JOBS_QUEUE_URL": queue,
        "CONVERSA_MODELS": json.dumps(models),
        "CONVERSA_TITLE_MODEL": "m",
        "CONVERSA_MEMORY": "on",
        "CONVERSA_EMBEDDER": "lambda",
        "CONVERSA_EMBED_FUNCTION": "_",
        "AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{embed_port}",
    })
    if args.key == "ssm":
        env.pop("OPENAI_API_KEY", None)
        env["OPENAI_API_KEY_PARAMETER"] = parameter
    else:
        env["OPENAI_API_KEY"] = "test-key"
    base = f"http://127.0.0.1:{port}/lambda-url/_"
    firsts, warms, inits, readies, loads = [], [], [], [], []
    try:
        for run in range(args.runs):
            with tempfile.TemporaryFile() as log, tempfile.TemporaryFile() as embed_log:
                embed_fn = subprocess.Popen([args.embed_bin], env=embed_env, stdout=embed_log,
                                            stderr=subprocess.STDOUT)
                runtime.reset()
                started = time.monotonic()
                fn = subprocess.Popen([args.bin], env=env, stdout=log, stderr=subprocess.STDOUT)
                try:
                    status, body = request(f"{base}/api/models")
                    first = time.monotonic() - started
                    assert status == 200, body
                    assert runtime.first is not None, "the function never polled the Runtime API"
                    ready = runtime.first - started
                    t = time.monotonic()
                    request(f"{base}/api/models")
                    warm = time.monotonic() - t
                    status, body = request(f"{base}/api/chat/send",
                                           {"message": f"May I bring my dog on Fridays? ({run})", "model": "m"})
                    assert status == 200 and b"event: done" in body, body[:2000]
                finally:
                    fn.kill()
                    fn.wait()
                    embed_fn.kill()
                    embed_fn.wait()
                embed_log.seek(0)
                text = embed_log.read().decode(errors="replace")
            m = re.search(r"embedding model loaded on first use.*?\bms[\"=:]+\s*(\d+)", text) or \
                re.search(r"\bms[\"=:]+\s*(\d+).*?embedding model loaded on first use", text)
            if not m:
                sys.exit("no 'embedding model loaded on first use' line in the embedding function's log:\n"
                         + text[-3000:])
            firsts.append(first * 1000)
            warms.append(warm * 1000)
            inits.append((first - warm) * 1000)
            readies.append(ready * 1000)
            loads.append(int(m.group(1)))
            print(f"run {run + 1}: ready (spawn -> first poll) {ready * 1000:.1f} ms, first response "
                  f"{first * 1000:.1f} ms, warm {warm * 1000:.1f} ms, first - warm {(first - warm) * 1000:.1f} ms, "
                  f"model load on first embedding {m.group(1)} ms", flush=True)
    finally:
        for process in (emulator, embed_emulator):
            process.kill()
            process.wait()
        fake.shutdown()
    med = statistics.median
    print(f"median of {args.runs}: init (spawn -> first poll) {med(readies):.1f} ms "
          f"(min {min(readies):.1f}, max {max(readies):.1f}); first - warm {med(inits):.1f} ms "
          f"(first response {med(firsts):.1f} ms, "
          f"warm invocation {med(warms):.1f} ms); model load on the first embedding {med(loads):.0f} ms "
          f"(min {min(loads)}, max {max(loads)})")


if __name__ == "__main__":
    main()
