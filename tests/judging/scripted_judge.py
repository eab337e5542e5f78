"""SCRIPTED JUDGE: a stand-in for a judge *model*, for the happy-path tests only.

A real HTTP server process speaking the OpenAI chat-completions protocol on loopback, so the
client path under test (HTTP, backoff, cache, parsing) is the real one; only the judge's
*opinion* is scripted. The real-model test runs `transformers serve` separately
(test_transformers_serve.py). It reads markers that the tests put into the answers:

    SCRIPTED_SCORE=<x>  rate x: "Rating: [[x]]" (MT-Bench), the higher wins (pairwise),
                        a double-quoted decimal-friendly dict (AlignBench)
    SCRIPTED_GARBAGE    answer without a valid rating ("[1]" citation, bare "Rating: 8")
    SCRIPTED_FLAKY      the first call for a request is unparseable, later ones are fine
    SCRIPTED_429        the first call for a request gets HTTP 429 (Retry-After: 0)
    SCRIPTED_500        the first call for a request gets HTTP 500
    SCRIPTED_BIAS_A     pairwise: always "[[A]]" (position bias -> inconsistent verdicts)
    SCRIPTED_MUTE_AS_A  pairwise: no verdict when this answer is shown as A (one order fails)

With --prefer TEXT, a pairwise verdict goes to the answer that contains TEXT when only one does (a judge
with a taste, for the on-policy rounds' tests); otherwise the markers above decide.

REPLAYED JUDGMENTS: with --replay FILE (FastChat judgment files whose prompts are stored as
SHA-256, tests/judging/real/), a request whose user prompt has a recorded judgment gets that
judgment, word for word: real GPT-4 output for the exact prompt it was written for.

A request carrying `Authorization: Bearer wrong-key` gets HTTP 401, as OpenAI answers a bad key.

    python tests/judging/scripted_judge.py --port-file PATH [--delay SECONDS] [--replay FILE ...]

GET /v1/models lists "scripted-judge"; GET /stats returns {"requests": n, "by_status": {...}, "by_kind": {...}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCORE = re.compile(r"SCRIPTED_SCORE=(\d+(?:\.\d+)?)")
B_SECTION = re.compile(r"\[The Start of Assistant B's Answer\]|<\|The Start of Assistant B's Conversation with User\|>")


def last_score(text: str) -> str | None:
    found = SCORE.findall(text)
    return found[-1] if found else None


def judge_text(messages: list[dict], first_call: bool, prefer: str | None = None) -> tuple[str, str]:
    """(kind, judgment text) for a chat request."""
    content = "\n".join(message["content"] for message in messages)
    user = messages[-1]["content"]
    if "[助手的答案开始]" in user:
        answer = user.split("[助手的答案开始]", 1)[1]
        if "SCRIPTED_GARBAGE" in answer or ("SCRIPTED_FLAKY" in answer and first_call):
            return "alignbench", "回答一般。{'综合得分': 很好}"
        score = last_score(answer) or "5"
        dimensions = re.findall(r"^\d+\. ([^:\n]+): ", user, flags=re.MULTILINE)
        scores = {dimension: float(score) for dimension in dimensions}
        scores["综合得分"] = float(score)
        return "alignbench", "各维度评价如下。\n" + json.dumps(scores, ensure_ascii=False)
    if "[[A]]" in content:
        if "SCRIPTED_BIAS_A" in user:
            return "pairwise", "Assistant A is better. [[A]]"
        split = B_SECTION.search(user)
        a_part, b_part = (user[: split.start()], user[split.start():]) if split else (user, "")
        if "SCRIPTED_MUTE_AS_A" in a_part:
            return "pairwise", "Both answers have merits; I cannot tell which is better."
        a, b = float(last_score(a_part) or 5), float(last_score(b_part) or 5)
        if prefer and (prefer in answer_text(a_part)) != (prefer in b_part):
            a, b = (1.0, 0.0) if prefer in answer_text(a_part) else (0.0, 1.0)
        verdict = "[[A]]" if a > b else "[[B]]" if b > a else "[[C]]"
        return "pairwise", f"Comparing both answers. {verdict}"
    if "[[rating]]" in content:
        if "SCRIPTED_GARBAGE" in user or ("SCRIPTED_FLAKY" in user and first_call):
            return "single", "A solid answer, as noted in [1]. Rating: 8"
        score = last_score(user) or "5"
        return "single", f"The assistant answers the question. Rating: [[{score}]]"
    return "other", "I am a scripted judge."


def answer_text(a_part: str) -> str:
    """Assistant A's answer without the question before it (pair-v2 shows the question first)."""
    marker = "[The Start of Assistant A's Answer]"
    return a_part.split(marker, 1)[1] if marker in a_part else a_part


class ScriptedJudge(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a killed client is part of the resume test
        pass

    def __init__(self, address, delay_s: float, replay: dict[str, str], prefer: str | None = None):
        super().__init__(address, Handler)
        self.prefer = prefer
        self.delay_s = delay_s
        self.replay = replay
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.requests = 0


class Handler(BaseHTTPRequestHandler):
    server: ScriptedJudge

    def log_message(self, format, *args):  # quiet
        pass

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _refused_key(self) -> bool:
        if self.headers.get("Authorization") != "Bearer wrong-key":
            return False
        with self.server.lock:
            self.server.by_status["401"] += 1
        self._send(401, {"error": {"message": "Incorrect API key provided: wrong-key.", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}})
        return True

    def do_GET(self):
        if self._refused_key():
            return
        if self.path.rstrip("/").endswith("/v1/models"):
            self._send(200, {"object": "list", "data": [{"id": "scripted-judge", "object": "model", "owned_by": "tests"}]})
        elif self.path.rstrip("/").endswith("/stats"):
            with self.server.lock:
                self._send(200, {"requests": self.server.requests, "by_status": dict(self.server.by_status),
                                 "by_kind": dict(self.server.by_kind)})
        elif self.path.rstrip("/").endswith("/health"):
            self._send(200, {"status": "ok"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._refused_key():
            return
        request = json.loads(body)
        digest = hashlib.sha256(body).hexdigest()
        with self.server.lock:
            self.server.requests += 1
            self.server.seen[digest] += 1
            first_call = self.server.seen[digest] == 1
        time.sleep(self.server.delay_s)
        user = request["messages"][-1]["content"]
        for marker, status in (("SCRIPTED_429", 429), ("SCRIPTED_500", 500)):
            if marker in user and first_call:
                with self.server.lock:
                    self.server.by_status[str(status)] += 1
                self._send(status, {"error": {"message": f"scripted {status}"}}, {"Retry-After": "0"})
                return
        recorded = self.server.replay.get(hashlib.sha256(user.encode("utf-8")).hexdigest())
        kind, text = ("replay", recorded) if recorded is not None else judge_text(request["messages"], first_call, self.server.prefer)
        with self.server.lock:
            self.server.by_status["200"] += 1
            self.server.by_kind[kind] += 1
        self._send(200, {
            "id": f"scripted-{digest[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "scripted-judge"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })


def load_replay(paths: list[str]) -> dict[str, str]:
    """sha256(user prompt) -> recorded judgment, from single (user_prompt_sha256) and pair
    (g1_/g2_user_prompt_sha256) rows; the first recording of a prompt wins."""
    replay: dict[str, str] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for prefix in ("", "g1_", "g2_"):
                if f"{prefix}user_prompt_sha256" in row:
                    replay.setdefault(row[f"{prefix}user_prompt_sha256"], row[f"{prefix}judgment"])
    return replay


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--replay", nargs="*", default=[], help="FastChat judgment files with prompt hashes")
    parser.add_argument("--prefer", help="pairwise: the answer containing this text wins")
    args = parser.parse_args()
    server = ScriptedJudge(("127.0.0.1", 0), args.delay, load_replay(args.replay), args.prefer)
    Path(args.port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
