"""A `gemini/` deployment through the gateway, read by the OpenAI Python SDK:
completion, stream, tools and a rate limit, against a fake of Google's Gemini
API written from its reference ("Generating content",
https://ai.google.dev/api/generate-content: `generateContent` and
`streamGenerateContent?alt=sse`, `GenerateContentResponse`, `usageMetadata`;
"Troubleshooting", https://ai.google.dev/gemini-api/docs/troubleshooting:
the error bodies). The fake refuses a request without the right
`x-goog-api-key`, as Gemini does."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from conftest import start_gateway

GEMINI_KEY = "AIzaSyD-python-gemini-test-key-0123456789"
USAGE = {
    "promptTokenCount": 12,
    "cachedContentTokenCount": 4,
    "candidatesTokenCount": 6,
    "thoughtsTokenCount": 3,
    "totalTokenCount": 21,
}
METHOD = re.compile(r"^/v1beta/models/([\w.-]+):(generateContent|streamGenerateContent)(\?alt=sse)?$")


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
        method = METHOD.match(self.path)
        if not method or (method[2] == "streamGenerateContent") != (method[3] == "?alt=sse"):
            return self.error(404, "NOT_FOUND", "no such method")
        if self.headers.get("x-goog-api-key") != GEMINI_KEY:
            return self.error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
        parts, error = answer_for(request)
        if error:
            return self.error(*error)
        common = {"modelVersion": method[1], "responseId": "resp-1"}
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
    response = client.chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )
    assert response.choices[0].message.content == "Hello from Gemini"
    assert response.choices[0].finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 9)
    assert response.usage.total_tokens == 21
    assert response.usage.prompt_tokens_details.cached_tokens == 4
    assert response.usage.completion_tokens_details.reasoning_tokens == 3


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
