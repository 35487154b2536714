"""A `gemini/` deployment through the gateway, read by the OpenAI Python SDK:
completion, stream, tools, and the error classes (a rate limit retried then
answered by a fallback, a context-window error sent to
`context_window_fallbacks`, a safety block reaching the client as a refusal),
against a fake of Google's Gemini
API written from its reference ("Generating content",
https://ai.google.dev/api/generate-content: `generateContent` and
`streamGenerateContent?alt=sse`, `GenerateContentResponse`, `usageMetadata`;
"Troubleshooting", https://ai.google.dev/gemini-api/docs/troubleshooting:
the error bodies; "Safety settings",
https://ai.google.dev/gemini-api/docs/safety-settings, and
`GenerateContentResponse.promptFeedback`: a blocked prompt). The fake refuses a request without the right
`x-goog-api-key`, as Gemini does."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import (
    ScriptedUpstream,
    assert_answered_by,
    assert_completion,
    assert_response_cost,
    openai_completion,
    openai_fallbacks,
    start_gateway,
)

GEMINI_KEY = "AIzaSyD-python-gemini-test-key-0123456789"
USAGE = {
    "promptTokenCount": 12,
    "cachedContentTokenCount": 4,
    "candidatesTokenCount": 6,
    "thoughtsTokenCount": 3,
    "totalTokenCount": 21,
}
BLOCKED = {
    "blockReason": "SAFETY",
    "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    ],
}
METHOD = re.compile(r"^/v1beta/models/([\w.-]+):(generateContent|streamGenerateContent)(\?alt=sse)?$")
# "Embeddings" (https://ai.google.dev/api/embeddings): `embedContent` answers
# `{"embedding": {"values"}}`, `batchEmbedContents` `{"embeddings": [...]}`;
# neither counts tokens.
EMBED = re.compile(r"^/v1beta/models/([\w.-]+):(embedContent|batchEmbedContents)$")


def embedding_of(request):
    """The fake's vector for one `EmbedContentRequest`: its text's length, 0.5."""
    return {"values": [float(len(request["content"]["parts"][0]["text"])), 0.5]}


def candidate(parts, finish=None):
    out = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        out["finishReason"] = finish
    return out


def answer_for(request):
    """Gemini's answer to `request`: parts to say, or an error."""
    last = request["contents"][-1]["parts"]
    if any("functionResponse" in part for part in last):
        return [{"text": "It is 21 C in Paris."}], None
    text = last[-1].get("text", "")
    if text == "rate limit me":
        return None, (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.")
    if text == "too long":
        return None, (
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        )
    if "tools" in request:
        return [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}], None
    return [{"text": "Hello"}, {"text": " from"}, {"text": " Gemini"}], None


class FakeGemini(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, status, message):
        body = {"error": {"code": code, "message": message, "status": status}}
        self.reply(code, json.dumps(body))

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.requests.append((self.path, request))
        embed = EMBED.match(self.path)
        if embed:
            if self.headers.get("x-goog-api-key") != GEMINI_KEY:
                return self.error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
            if embed[2] == "embedContent":
                return self.reply(200, json.dumps({"embedding": embedding_of(request)}))
            if any(r.get("model") != f"models/{embed[1]}" for r in request["requests"]):
                return self.error(400, "INVALID_ARGUMENT", "each request needs its model")
            return self.reply(200, json.dumps({"embeddings": [embedding_of(r) for r in request["requests"]]}))
        method = METHOD.match(self.path)
        if not method or (method[2] == "streamGenerateContent") != (method[3] == "?alt=sse"):
            return self.error(404, "NOT_FOUND", "no such method")
        if self.headers.get("x-goog-api-key") != GEMINI_KEY:
            return self.error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
        common = {"modelVersion": method[1], "responseId": "resp-1"}
        if request["contents"][-1]["parts"][-1].get("text") == "block me":
            # No candidate: the prompt itself was blocked.
            body = json.dumps(dict(common, promptFeedback=BLOCKED, usageMetadata={"promptTokenCount": 8}))
            if method[2] == "generateContent":
                return self.reply(200, body)
            return self.reply(200, "data: " + body + "\r\n\r\n", "text/event-stream")
        parts, error = answer_for(request)
        if error:
            return self.error(*error)
        if method[2] == "generateContent":
            body = dict(common, candidates=[candidate(parts, "STOP")], usageMetadata=USAGE)
            return self.reply(200, json.dumps(body))
        events = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            event = dict(common, candidates=[candidate([part], "STOP" if last else None)])
            event["usageMetadata"] = USAGE if last else {"promptTokenCount": 12}
            events.append("data: " + json.dumps(event) + "\r\n\r\n")
        self.reply(200, "".join(events), "text/event-stream")


@pytest.fixture(scope="module")
def gemini(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGemini)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path_factory.mktemp("gemini") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gemini-flash\n"
        "    litellm_params:\n"
        "      model: gemini/gemini-2.5-flash\n"
        f"      api_base: http://127.0.0.1:{server.server_address[1]}\n"
        "      api_key: os.environ/GEMINI_API_KEY\n"
        "  - model_name: gemini-embed\n"
        "    litellm_params:\n"
        "      model: gemini/gemini-embedding-001\n"
        f"      api_base: http://127.0.0.1:{server.server_address[1]}\n"
        "      api_key: os.environ/GEMINI_API_KEY\n"
        "router_settings:\n"
        "  num_retries: 0\n"
    )
    gateway = start_gateway(config, {"GEMINI_API_KEY": GEMINI_KEY})
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield client, server.requests
    code, logs = gateway.stop()
    server.shutdown()
    assert code == 0
    assert GEMINI_KEY not in logs, "the Gemini key leaked into the logs"


def test_a_completion_with_gemini_usage(gemini):
    client, _ = gemini
    raw = client.chat.completions.with_raw_response.create(
        model="gemini-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    response = raw.parse()
    assert_completion(response, "Hello from Gemini", (12, 9, 21), cached=4)
    assert response.usage.completion_tokens_details.reasoning_tokens == 3
    # LiteLLM's prices for gemini/gemini-2.5-flash (the snapshot): 3e-07 an
    # uncached prompt token, 3e-08 a cached one, 2.5e-06 an answer or
    # thought token: 8 × 3e-07 + 4 × 3e-08 + 9 × 2.5e-06, exactly.
    assert_response_cost(raw, "0.00002502", (8, "3e-07"), (4, "3e-08"), (9, "2.5e-06"))


def test_embeddings_of_a_list_as_base64_and_of_one_text_as_floats(gemini):
    client, requests = gemini
    # The SDK asks for base64 unless told otherwise, and decodes it.
    raw = client.embeddings.with_raw_response.create(model="gemini-embed", input=["Hello world", "Bonjour"])
    response = raw.parse()
    assert [e.embedding for e in response.data] == [[11.0, 0.5], [7.0, 0.5]]
    assert [e.index for e in response.data] == [0, 1]
    # Gemini counts no tokens: a token per 4 characters, rounded up (3 + 2),
    # at LiteLLM's 1.5e-07 for gemini/gemini-embedding-001.
    assert response.usage.prompt_tokens == 5
    assert_response_cost(raw, "0.00000075", (5, "1.5e-07"))
    path, sent = requests[-1]
    assert path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [r["content"]["parts"][0]["text"] for r in sent["requests"]] == ["Hello world", "Bonjour"]

    response = client.embeddings.create(
        model="gemini-embed", input="Hi", dimensions=2, encoding_format="float")
    assert response.data[0].embedding == [2.0, 0.5]
    path, sent = requests[-1]
    assert path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert sent == {"content": {"parts": [{"text": "Hi"}]}, "outputDimensionality": 2}

    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="gemini-embed", input=[[1, 2, 3]])
    assert "not token ids" in refused.value.message


def test_a_stream_read_as_openai_chunks(gemini):
    client, _ = gemini
    stream = client.chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert text == "Hello from Gemini"
    assert finish == "stop"
    assert usage is not None and usage.total_tokens == 21


def test_a_tool_call_round_trip(gemini):
    client, requests = gemini
    tools = [{"type": "function", "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    response = client.chat.completions.create(model="gemini-flash", messages=messages, tools=tools)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    response = client.chat.completions.create(model="gemini-flash", messages=messages, tools=tools)
    assert response.choices[0].message.content == "It is 21 C in Paris."
    _, sent = requests[-1]
    assert sent["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"temp_c": 21}}}
    ]


def test_a_spent_quota_is_a_rate_limit_error(gemini):
    client, _ = gemini
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="gemini-flash", messages=[{"role": "user", "content": "rate limit me"}]
        )
    assert raised.value.status_code == 429
    assert GEMINI_KEY not in str(raised.value)


@pytest.fixture(scope="module")
def gemini_with_fallbacks(tmp_path_factory):
    """`gemini-flash` with `gpt` as its fallback and `big` as its
    context-window fallback, both OpenAI-compatible."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGemini)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gpt, big = ScriptedUpstream(), ScriptedUpstream()
    config = tmp_path_factory.mktemp("gemini-fallbacks") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gemini-flash\n"
        "    litellm_params:\n"
        "      model: gemini/gemini-2.5-flash\n"
        f"      api_base: http://127.0.0.1:{server.server_address[1]}\n"
        "      api_key: os.environ/GEMINI_API_KEY\n"
        + openai_fallbacks(gpt, big, "[{gemini-flash: [gpt]}]", "[{gemini-flash: [big]}]")
    )
    gateway = start_gateway(config, {"GEMINI_API_KEY": GEMINI_KEY})
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)

    def reset():
        server.requests.clear()
        for upstream in (gpt, big):
            upstream.reset(default=(200, openai_completion(f"from {upstream.url}")))

    yield client, server.requests, gpt, big, reset
    code, logs = gateway.stop()
    server.shutdown()
    gpt.stop()
    big.stop()
    assert code == 0
    assert GEMINI_KEY not in logs, "the Gemini key leaked into the logs"


def ask_raw(client, text):
    return client.chat.completions.with_raw_response.create(
        model="gemini-flash", messages=[{"role": "user", "content": text}]
    )


def test_a_spent_quota_is_retried_then_answered_by_a_fallback_on_another_provider(gemini_with_fallbacks):
    client, requests, gpt, big, reset = gemini_with_fallbacks
    reset()
    gpt.reset((200, openai_completion("from the fallback")))
    raw = ask_raw(client, "rate limit me")
    assert_answered_by(raw, "gpt", "from the fallback")
    # Rate limited is retryable: Gemini was asked again before the fallback.
    assert len(requests) == 2
    assert len(gpt.requests) == 1 and not big.requests


def test_a_context_window_error_goes_to_the_context_window_fallbacks(gemini_with_fallbacks):
    client, requests, gpt, big, reset = gemini_with_fallbacks
    reset()
    big.reset((200, openai_completion("the long answer")))
    raw = ask_raw(client, "too long")
    assert_answered_by(raw, "big", "the long answer")
    # Not retried (the same prompt would not fit), not sent to `fallbacks`.
    assert len(requests) == 1
    assert len(big.requests) == 1 and not gpt.requests


@pytest.mark.parametrize("stream", [False, True])
def test_a_safety_block_reaches_the_sdk_as_a_refusal_with_its_reason(gemini_with_fallbacks, stream):
    client, requests, gpt, big, reset = gemini_with_fallbacks
    reset()
    with pytest.raises(openai.BadRequestError) as raised:
        answer = client.chat.completions.create(
            model="gemini-flash", messages=[{"role": "user", "content": "block me"}], stream=stream
        )
        for _ in answer if stream else ():
            pass
    error = raised.value
    assert error.status_code == 400
    assert error.code == "content_filter", error.body
    assert "SAFETY" in error.message, error.body
    assert "HARM_CATEGORY_DANGEROUS_CONTENT" in error.message, error.body
    assert GEMINI_KEY not in str(error.body)
    # Asked once (a refusal is not retried), and no fallback hid it.
    assert len(requests) == 1
    assert not gpt.requests and not big.requests
