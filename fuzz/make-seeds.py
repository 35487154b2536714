#!/usr/bin/env python3
"""Writes the seeds the corpora grew from (corpus/<target>/seed-*): the
project's fixtures and a few hand-made inputs. The committed corpora are what
fuzzing grew from these, minimized (libFuzzer's -set_cover_merge=1
-use_counters=0: every coverage edge, fewest inputs), plus the seed-echo-*
inputs, kept by name: they fail on a gateway that leaks a key glued to text,
so a merge there would drop them. CI never needs the fixtures.
Usage: fuzz/make-seeds.py <fixtures dir>"""
import json, os, sys

fixtures = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
STATUSES = [200, 200, 200, 200, 200, 400, 401, 402, 403, 404, 408, 429, 500, 502, 503, 529]
EVENT_STREAM, CLIENT_STREAM, HEADERS, CLIENT_USAGE, BODY_ERROR, CALL_ERROR, CLIENT_GONE = (
    1, 2, 4, 8, 16, 32, 64)
KEY = "sk-or-v1-fuzzkey0123456789abcdef"  # the openrouter target's configured key


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(fixtures, *path), "rb") as f:
        return f.read()


def script(status, flags, chunk, body, headers=b""):
    head = bytes([STATUSES.index(status), flags | (HEADERS if headers else 0), chunk])
    if headers:
        head += headers.rstrip(b"\n") + b"\n\n"
    return head + body


# SSE: a chunking seed byte, then a stream.
for vendor in ("openai", "openrouter"):
    for name in sorted(os.listdir(os.path.join(fixtures, vendor))):
        if name.endswith(".sse"):
            write("sse_parser", f"{vendor}-{name}", b"\x07" + read(vendor, name))
write("sse_parser", "fields", b"\x03\xef\xbb\xbfevent: x\r\nid: 1\rretry: 10\n: c\ndata\ndata: a\r\n\r\n")

# Requests as clients send them.
requests = {
    "plain": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    "stream": {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    "usage": {"model": "demo", "stream": True, "stream_options": {"include_usage": False},
              "max_tokens": 7, "messages": [{"role": "system", "content": "s"},
                                            {"role": "user", "content": "é\u2028"}]},
    "tools": {"model": "openrouter/x:free", "max_completion_tokens": 9, "tools": [{"type": "function"}],
              "stream_options": None, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
}
for name, body in requests.items():
    write("chat_request", name, json.dumps(body).encode())
write("chat_request", "spaced", b' \n{ "messages" : [ {} ] ,"model":"a\\"b" , "stream":false }')

# Configs.
write("config_yaml", "minimal", read("litellm", "minimal.yaml"))
write("config_yaml", "realistic", read("litellm", "realistic.yaml"))
for name in ("demo.yaml", "openrouter-free.yaml"):
    with open(os.path.join(here, "..", "examples", name), "rb") as f:
        write("config_yaml", name.removesuffix(".yaml"), f.read())

# Upstream answers: the OpenRouter fixtures with their statuses and headers.
manifest = json.loads(read("openrouter", "manifest.json"))
for entry in manifest["chat_completions"]:
    name, status = entry["file"], entry["http_status"]
    if status not in STATUSES:
        continue
    base = name.rsplit(".", 1)[0]
    headers_path = os.path.join(fixtures, "openrouter", base + ".headers")
    headers = read("openrouter", base + ".headers") if os.path.exists(headers_path) else b""
    flags = EVENT_STREAM | CLIENT_STREAM if name.endswith(".sse") else 0
    body = read("openrouter", name)
    write("openrouter_response", base, script(status, flags, 0, body, headers))
    if name.endswith(".sse"):
        write("openrouter_response", base + "-chunked", script(status, flags, 7, body))
        write("openrouter_response", base + "-reset", script(status, flags | BODY_ERROR, 64, body))
    write("cost_usage", "openrouter-" + base, script(status, flags, 0, body, headers))
# Upstream errors that echo the key, glued to text.
for i, message in enumerate([f"invalid key={KEY}", f'{{"api_key":"{KEY}"}}', f"x-api-key:{KEY}",
                             f"see https://internal/{KEY}/x"]):
    body = json.dumps({"error": {"message": message, "code": 401}}).encode()
    write("openrouter_response", f"echo-{i}", script(401, 0, 0, body))
    write("openrouter_response", f"echo-in-200-{i}", script(200, 0, 0, body))
    sse = b"data: " + json.dumps({"error": {"message": message, "code": 502}}).encode() + b"\n\n"
    write("openrouter_response", f"echo-stream-{i}", script(200, EVENT_STREAM | CLIENT_STREAM, 0, sse))

# Native providers (provider_translations): Anthropic's answers and events,
# Azure's filter, as the testkit's fakes write them; errors echoing the keys.
ANTHROPIC_KEY, AZURE_KEY = "sk-ant-api03-fuzzkey0123456789abcdef", "azurefuzzkey0123456789abcdef0123"


def anthropic_event(name, data):
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
           "stop_reason": "tool_use", "usage": {"input_tokens": 9, "output_tokens": 3,
                                                "cache_read_input_tokens": 2, "cache_creation_input_tokens": 1}}
events = (anthropic_event("message_start", {"type": "message_start", "message": dict(message, content=[])})
          + anthropic_event("ping", {"type": "ping"})
          + anthropic_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                    "content_block": {"type": "text", "text": ""}})
          + anthropic_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                    "delta": {"type": "text_delta", "text": "Hi"}})
          + anthropic_event("content_block_start", {"type": "content_block_start", "index": 1,
                                                    "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}})
          + anthropic_event("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                    "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}})
          + anthropic_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                                              "usage": {"output_tokens": 3}})
          + anthropic_event("message_stop", {"type": "message_stop"}))
write("provider_translations", "anthropic-message", script(200, 0, 0, json.dumps(message).encode()))
write("provider_translations", "anthropic-stream", script(200, EVENT_STREAM | CLIENT_STREAM | CLIENT_USAGE, 0, events))
write("provider_translations", "anthropic-stream-chunked", script(200, EVENT_STREAM | CLIENT_STREAM, 5, events))
write("provider_translations", "anthropic-stream-reset", script(200, EVENT_STREAM | CLIENT_STREAM | BODY_ERROR, 40, events[:500]))
overloaded = anthropic_event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
write("provider_translations", "anthropic-overloaded-event", script(200, EVENT_STREAM | CLIENT_STREAM, 0, events[:300] + overloaded))
write("provider_translations", "anthropic-refusal", script(200, 0, 0, json.dumps(dict(message, content=[], stop_reason="refusal")).encode()))
write("provider_translations", "azure-filter", script(400, 0, 0, json.dumps({"error": {
    "message": "filtered", "code": "content_filter", "innererror": {"code": "ResponsibleAIPolicyViolation",
    "content_filter_result": {"hate": {"filtered": True, "severity": "high"}}}}}).encode()))
for i, key in enumerate([ANTHROPIC_KEY, AZURE_KEY]):
    for status in (400, 401, 529):
        body = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": f"key={key}"}}).encode()
        write("provider_translations", f"echo-{i}-{status}", script(status, 0, 0, body))

# The cost layer: OpenAI's answers, whole, streamed, cut and abandoned.
write("cost_usage", "openai-success", script(200, 0, 0, read("openai", "success_nonstream.json")))
write("cost_usage", "openai-429", script(429, 0, 0, read("openai", "429_rate_limit.json"),
                                         read("openai", "429_rate_limit.headers")))
stream = read("openai", "stream_include_usage.sse")
write("cost_usage", "openai-stream", script(200, EVENT_STREAM | CLIENT_STREAM | CLIENT_USAGE, 0, stream))
write("cost_usage", "openai-stream-strip", script(200, EVENT_STREAM | CLIENT_STREAM, 9, stream))
write("cost_usage", "openai-stream-cut", script(200, EVENT_STREAM | CLIENT_STREAM | BODY_ERROR, 100, stream[:900]))
write("cost_usage", "openai-stream-gone", script(200, EVENT_STREAM | CLIENT_STREAM | CLIENT_GONE, 50, stream))
write("cost_usage", "refused", script(200, CALL_ERROR, 0, b""))
