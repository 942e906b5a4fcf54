#!/usr/bin/env python3
"""Time to first token of the offline model through the server, as a new user meets it.

Starts each `conversa-local` binary given (on its own data directory, offline model only), uploads a
PDF, asks questions about it one at a time and then two at once, and prints a Markdown table: time to
the first token (from sending the request), to `done`, the prompt's size, the `queued` events seen and
the title. Binaries take turns per round, so the machine's noise falls on all of them alike.

    scripts/bench-offline.sh                     # builds, then runs this with the release binary
    python3 scripts/bench_offline.py --server NAME=BIN [--server NAME=BIN ...] --pdf FILE --model GGUF

Standard library only.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

QUESTIONS = [
    "What did the soldiers make their beds from?",
    "Which public building in the besieged town was a target for the guns?",
    "What did the writer compare the falling bullets to?",
]


class Server:
    def __init__(self, name, binary, model, embedder, env_extra):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="conversa-offline-bench-")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVERSA_", "OPENAI_", "AWS_"))}
        env.update(
            {
                "CONVERSA_BIND": "127.0.0.1:0",
                "CONVERSA_DATA_DIR": os.path.join(self.dir, "data"),
                "CONVERSA_FRONTEND_DIR": os.path.join(self.dir, "no-frontend"),
                "CONVERSA_LOCAL_MODEL": model,
                "CONVERSA_RATE_LIMIT_PER_MINUTE": "0",
                "MALLOC_ARENA_MAX": "2",
                "RUST_LOG": "warn",
            }
        )
        if embedder:
            env["CONVERSA_EMBED_MODEL"] = embedder
        env.update(env_extra)
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.base = None
        deadline = time.time() + 120
        for line in self.proc.stdout:
            m = re.search(r"running at (http://[0-9.:]+)", line)
            if m:
                self.base = m.group(1)
                break
            if time.time() > deadline:
                break
        if not self.base:
            self.stop()
            sys.exit(f"{name}: the server did not start; log in {self.dir}/server.log")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()

    def upload(self, path):
        boundary = uuid.uuid4().hex
        with open(path, "rb") as f:
            data = f.read()
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{os.path.basename(path)}\"\r\n"
            "Content-Type: application/pdf\r\n\r\n"
        ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(
            self.base + "/api/files",
            data=body,
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.load(r)

    def wait_ready(self, file_id):
        # The file's text is extracted in the background: wait until it is ready.
        deadline = time.time() + 300
        while time.time() < deadline:
            with urllib.request.urlopen(f"{self.base}/api/files/{file_id}", timeout=30) as r:
                meta = json.load(r)
            if meta.get("status", "ready") == "ready":
                return meta
            if meta.get("status") == "failed":
                sys.exit(f"{self.name}: extraction failed: {meta}")
            time.sleep(0.2)
        sys.exit(f"{self.name}: the file was not ready within 300 s")

    def ask(self, question, file_id):
        """One turn: seconds to the first token and to done, queued positions, title, done's usage."""
        body = json.dumps({"message": question, "file_ids": [file_id], "model": "local"}).encode()
        req = urllib.request.Request(
            self.base + "/api/chat/send",
            data=body,
            headers={"content-type": "application/json", "accept": "text/event-stream"},
        )
        out = {"first": None, "done": None, "queued": [], "title": None, "usage": None, "text": ""}
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            event = None
            for raw in r:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:].strip())
                    now = time.perf_counter() - start
                    if event == "token":
                        if out["first"] is None:
                            out["first"] = now
                        out["text"] += data.get("text", "")
                    elif event == "queued":
                        out["queued"].append(data.get("position"))
                    elif event == "title":
                        out["title"] = data.get("title")
                    elif event == "done":
                        out["done"] = now
                        out["usage"] = data.get("usage")
                    elif event == "error":
                        out["error"] = data
        return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", action="append", required=True, help="NAME=BINARY (repeatable)")
    ap.add_argument("--pdf", required=True)
    ap.add_argument("--model", required=True, help="the GGUF file")
    ap.add_argument("--embedder", default=None, help="the embedding model's directory")
    ap.add_argument("--rounds", type=int, default=1, help="times each question is asked per server")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for every server (repeatable), "
                    "e.g. CONVERSA_MAX_ANSWER_TOKENS=256 so that a rambling answer cannot hold the line")
    ap.add_argument("--server-env", action="append", default=[], help="NAME:KEY=VALUE for the server "
                    "NAME only (repeatable), e.g. two runs of one binary with different settings")
    args = ap.parse_args()
    extra = dict(e.split("=", 1) for e in args.env)
    own = {}
    for e in args.server_env:
        name, _, pair = e.partition(":")
        key, _, value = pair.partition("=")
        own.setdefault(name, {})[key] = value

    servers = []
    for spec in args.server:
        name, _, binary = spec.partition("=")
        servers.append(Server(name, binary, args.model, args.embedder, {**extra, **own.get(name, {})}))
    try:
        files = {}
        for s in servers:
            meta = s.upload(args.pdf)
            files[s.name] = s.wait_ready(meta["id"])["id"]
            # Load the model (first use) outside the measured turns.
            s.ask("Hello", files[s.name])
        rows = {s.name: [] for s in servers}
        for _ in range(args.rounds):
            for q in QUESTIONS:
                for s in servers:
                    rows[s.name].append(s.ask(q, files[s.name]))
        pairs = {}
        for s in servers:
            results = [None, None]

            def one(i, s=s, results=results):
                results[i] = s.ask(QUESTIONS[i], files[s.name])

            ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            pairs[s.name] = results
    finally:
        for s in servers:
            s.stop()

    load = open("/proc/loadavg").read().split()[:3]
    print(f"PDF `{os.path.basename(args.pdf)}`, {len(QUESTIONS)} questions × {args.rounds} round(s) per server, "
          f"load average at the end {' '.join(load)}.\n")
    print("| server | first token p50 | first token max | done p50 | prompt tokens p50 | answer tokens p50 | "
          "two at once: first tokens | two at once: queued events | a title |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in servers:
        r = [x for x in rows[s.name] if x["first"] is not None]
        firsts = [x["first"] for x in r]
        dones = [x["done"] for x in r if x["done"] is not None]
        prompts = [x["usage"]["prompt_tokens"] for x in r if x.get("usage")]
        answers = [x["usage"]["completion_tokens"] for x in r if x.get("usage")]
        pair = pairs[s.name]
        pair_firsts = " / ".join(f"{p['first']:.1f} s" if p["first"] is not None else "—" for p in pair)
        pair_queued = " / ".join(str(p["queued"]) for p in pair)
        title = next((x["title"] for x in rows[s.name] if x["title"]), "—")
        failed = len(rows[s.name]) - len(r)
        print(
            f"| {s.name}{' (' + str(failed) + ' failed)' if failed else ''} | {statistics.median(firsts):.2f} s | "
            f"{max(firsts):.2f} s | {statistics.median(dones):.2f} s | {statistics.median(prompts):.0f} | "
            f"{statistics.median(answers):.0f} | {pair_firsts} | {pair_queued} | {title} |"
        )


if __name__ == "__main__":
    main()
