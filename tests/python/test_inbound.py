"""The official SDKs of the inbound APIs against the gateway binary: the
Anthropic Python SDK on `/v1/messages` (streaming and not, tool use) in
front of an OpenAI-compatible model group and an Anthropic one, and the
OpenAI SDK's `client.responses.create` on `/v1/responses` (streaming and
not).

The upstreams are fakes on loopback: a small scripted server below speaking
OpenAI's chat completions (shapes from OpenAI's API reference, "Chat") and
Anthropic's Messages API (reference "Messages" and "Streaming Messages",
https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/docs/build-with-claude/streaming), and the
testkit's `fake-upstream` serving Anthropic's recorded stream."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest

from conftest import ROOT, start_fake_upstream, start_gateway

MASTER_KEY = "sk-tollgate-inbound-python-master-key"
UPSTREAM_KEY = "sk-upstream-inbound-python-key-0123456789"
FIXTURE = ROOT / "tests/python/fixtures/anthropic_stream.sse"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def sse(events):
    """OpenAI-style `data:` events, or Anthropic's named ones."""
    out = ""
    for event in events:
        if isinstance(event, tuple):
            out += f"event: {event[0]}\ndata: {json.dumps(event[1])}\n\n"
        else:
            out += f"data: {json.dumps(event)}\n\n"
    return out


def openai_answer(request):
    """A chat answer: a tool call when tools are offered and no result came
    back yet, else text."""
    wants_tool = request.get("tools") and not any(
        m.get("role") == "tool" for m in request["messages"]
    )
    base = {"id": "chatcmpl-fake", "created": 1700000000, "model": "fake-gpt"}
    usage = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
    if not request.get("stream"):
        message = {"role": "assistant", "content": "Sunny in Paris."}
        finish = "stop"
        if wants_tool:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather",
                                             "arguments": "{\"city\": \"Paris\"}"}}],
            }
            finish = "tool_calls"
        body = dict(base, object="chat.completion", usage=usage,
                    choices=[{"index": 0, "message": message, "finish_reason": finish}])
        return "application/json", json.dumps(body)

    def chunk(delta, finish=None):
        return dict(base, object="chat.completion.chunk",
                    choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    events = [chunk({"role": "assistant", "content": ""})]
    if wants_tool:
        events += [
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            chunk({}, "tool_calls"),
        ]
    else:
        events += [chunk({"content": "Sunny "}), chunk({"content": "in Paris."}), chunk({}, "stop")]
    events.append(dict(base, object="chat.completion.chunk", choices=[], usage=usage))
    return "text/event-stream", sse(events) + "data: [DONE]\n\n"


def anthropic_answer(request):
    usage = {"input_tokens": 25, "output_tokens": 15}
    message = {"id": "msg_fake", "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-5-20250929", "stop_sequence": None}
    if not request.get("stream"):
        body = dict(message, content=[{"type": "text", "text": "Bonjour."}],
                    stop_reason="end_turn", usage=usage)
        return "application/json", json.dumps(body)
    return "text/event-stream", FIXTURE.read_text()


class Fake(BaseHTTPRequestHandler):
    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        Fake.seen.append((self.path, dict(self.headers), body))
        if self.path.endswith("/messages/count_tokens"):
            # Reference "Count Message tokens": {"input_tokens": N}.
            kind, text = "application/json", json.dumps({"input_tokens": 42})
        elif self.path.endswith("/chat/completions"):
            kind, text = openai_answer(body)
        elif self.path.endswith("/messages"):
            kind, text = anthropic_answer(body)
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = text.encode()
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake = f"http://127.0.0.1:{server.server_address[1]}"
    recorded = start_fake_upstream(FIXTURE, seed=3)
    config = tmp_path_factory.mktemp("inbound") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt\n"
        "    litellm_params:\n"
        "      model: openai/fake-gpt\n"
        f"      api_base: {fake}/v1\n"
        "      api_key: os.environ/UPSTREAM_KEY\n"
        "      input_cost_per_token: 0.000001\n"
        "      output_cost_per_token: 0.000002\n"
        "  - model_name: claude\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5-20250929\n"
        f"      api_base: {fake}\n"
        "      api_key: os.environ/UPSTREAM_KEY\n"
        "  - model_name: claude-recorded\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5-20250929\n"
        f"      api_base: {recorded.url}\n"
        "      api_key: os.environ/UPSTREAM_KEY\n"
        "general_settings:\n"
        "  master_key: os.environ/MASTER_KEY\n"
    )
    proc = start_gateway(config, {"UPSTREAM_KEY": UPSTREAM_KEY, "MASTER_KEY": MASTER_KEY})
    yield proc.url
    code, logs = proc.stop()
    recorded.stop()
    server.shutdown()
    assert code == 0
    assert "messages" in logs and "responses" in logs, logs
    assert MASTER_KEY not in logs and UPSTREAM_KEY not in logs, "a key leaked into the logs"


def claude(url):
    return anthropic.Anthropic(base_url=url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def gpt(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_anthropic_sdk_messages(gateway, model):
    message = claude(gateway).messages.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        extra_body={"top_k": 3},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    sent = Fake.seen[-1][2]
    if model == "claude":
        # To Anthropic the request goes as written, top_k and all.
        assert sent["top_k"] == 3 and sent["model"] == "claude-sonnet-4-5-20250929"
    else:
        assert "top_k" not in sent and sent["messages"][0]["role"] == "system"
    assert message.type == "message"
    assert message.content[0].type == "text"
    assert message.content[0].text == ("Sunny in Paris." if model == "gpt" else "Bonjour.")
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == (4 if model == "gpt" else 15)


@pytest.mark.parametrize("model", ["gpt", "claude", "claude-recorded"])
def test_anthropic_sdk_stream(gateway, model):
    with claude(gateway).messages.stream(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    want = {"gpt": "Sunny in Paris."}.get(model, "The capital of France is Paris, on the Seine.")
    assert text == want
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == (4 if model == "gpt" else 15)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_use_round_trip(gateway, stream):
    client = claude(gateway)
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.messages.stream(model="gpt", max_tokens=100, tools=[WEATHER], messages=ask) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(model="gpt", max_tokens=100, tools=[WEATHER], messages=ask)
    assert message.stop_reason == "tool_use"
    call = [b for b in message.content if b.type == "tool_use"][0]
    assert call.name == "get_weather"
    assert call.input == {"city": "Paris"}
    answer = client.messages.create(
        model="gpt",
        max_tokens=100,
        tools=[WEATHER],
        messages=ask + [
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18C, sunny"}]},
        ],
    )
    assert answer.content[0].text == "Sunny in Paris."
    sent = Fake.seen[-1][2]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"}
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_anthropic_sdk_errors_are_anthropic_errors(gateway):
    with pytest.raises(anthropic.NotFoundError) as error:
        claude(gateway).messages.create(
            model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert error.value.body["error"]["type"] == "not_found_error"
    bad = anthropic.Anthropic(base_url=gateway, api_key="sk-wrong-0123456789", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def test_openai_sdk_responses(gateway):
    response = gpt(gateway).responses.create(
        model="gpt", instructions="Be brief.", input="Weather in Paris?")
    assert response.status == "completed"
    assert response.output_text == "Sunny in Paris."
    assert response.usage.input_tokens == 11
    assert response.usage.output_tokens == 4


def test_openai_sdk_responses_stream(gateway):
    stream = gpt(gateway).responses.create(model="gpt", input="Weather in Paris?", stream=True)
    deltas, completed = [], None
    for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    assert "".join(deltas) == "Sunny in Paris."
    assert completed is not None and completed.output_text == "Sunny in Paris."
    assert completed.usage.output_tokens == 4


def test_openai_sdk_responses_function_call(gateway):
    tool = {"type": "function", "name": "get_weather", "description": "The weather",
            "parameters": WEATHER["input_schema"]}
    response = gpt(gateway).responses.create(model="gpt", input="Weather in Paris?", tools=[tool])
    call = [item for item in response.output if item.type == "function_call"][0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    follow = gpt(gateway).responses.create(
        model="gpt", tools=[tool],
        input=[{"role": "user", "content": "Weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name,
                "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
    assert follow.output_text == "Sunny in Paris."
    with pytest.raises(openai.BadRequestError) as error:
        gpt(gateway).responses.create(model="gpt", input="x", previous_response_id="resp_1")
    assert "previous_response_id" in str(error.value)


def test_anthropic_sdk_count_tokens(gateway):
    count = claude(gateway).messages.count_tokens(
        model="claude", messages=[{"role": "user", "content": "Hello"}])
    assert count.input_tokens == 42
    path, headers, sent = Fake.seen[-1]
    assert path == "/v1/messages/count_tokens"
    assert sent["model"] == "claude-sonnet-4-5-20250929"
    assert headers.get("x-api-key") == UPSTREAM_KEY
    with pytest.raises(anthropic.BadRequestError) as error:
        claude(gateway).messages.count_tokens(
            model="gpt", messages=[{"role": "user", "content": "Hello"}])
    assert "Anthropic model" in str(error.value)
