"""Vertex AI through the gateway, read by the OpenAI Python SDK: `vertex_ai/`
deployments (a Claude and a Gemini model) against a fake Vertex AI written
here from Google's public references — the token exchange of "Using OAuth 2.0
for Server to Server Applications"
(https://developers.google.com/identity/protocols/oauth2/service-account), the
`generateContent` / `streamGenerateContent?alt=sse` routes of the Vertex AI API
reference, and Anthropic's "Claude on Vertex AI" `rawPredict` route
(https://docs.anthropic.com/en/api/claude-on-vertex-ai), and the text
embeddings `:predict` route ("Text embeddings API",
https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api).

Then the error classes, on both model families: a quota or overload error
retried then answered by a fallback on another provider, a context-window
error sent to `context_window_fallbacks`, and a safety block or a Claude
refusal reaching the client as a refusal with its reason, with an
OpenAI-compatible upstream as the fallback.

The fake checks the assertion's shape and claims (the Rust fake,
`tollgate_testkit::vertex`, also verifies its RS256 signature) and a bearer
token it issued on every model request."""

import base64
import json
import re
import threading
from urllib.parse import parse_qs

import openai
import pytest

from conftest import (
    LoopbackServer,
    ROOT,
    ScriptedUpstream,
    assert_answered_by,
    assert_completion,
    assert_response_cost,
    openai_completion,
    openai_fallbacks,
    start_gateway,
)

KEY_PEM = (ROOT / "crates/tollgate-testkit/fixtures/vertex-test-key.pem").read_text()
EMAIL = "tollgate-python@tollgate-test.iam.gserviceaccount.com"
PROJECT = "tollgate-test"
ROUTE = re.compile(
    rf"^/v1/projects/{PROJECT}/locations/us-east5/publishers/(google|anthropic)/models/([^/:]+):(\w+)$"
)


def _b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class FakeVertex(LoopbackServer):
    """The token endpoint and the model routes; model answers are scripted."""

    def __init__(self):
        self.token_requests = 0
        self.issued = set()
        self.replies = []
        self.model_paths = []
        self.lock = threading.Lock()
        super().__init__()

    def answer(self, path, headers, body):
        if path == "/token":
            status, content_type, payload = self.token(headers, body)
        else:
            status, content_type, payload = self.model(path, headers, body)
        return status, {"content-type": content_type}, payload

    def key_file(self) -> str:
        return json.dumps({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "python-test-key",
            "private_key": KEY_PEM,
            "client_email": EMAIL,
            "token_uri": self.url + "/token",
        })

    def push(self, status, payload, content_type="application/json"):
        with self.lock:
            self.replies.append((status, content_type, payload))

    def token(self, headers, body):
        with self.lock:
            self.token_requests += 1
            form = parse_qs(body.decode())
            bad = lambda why: (400, "application/json", json.dumps(
                {"error": "invalid_grant", "error_description": why}))
            if headers.get("content-type") != "application/x-www-form-urlencoded":
                return bad("form expected")
            if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                return bad("Invalid grant_type")
            parts = form.get("assertion", [""])[0].split(".")
            if len(parts) != 3:
                return bad("Invalid JWT")
            header, claims = _b64json(parts[0]), _b64json(parts[1])
            signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
            if header.get("alg") != "RS256" or len(signature) != 256:
                return bad("Invalid JWT Signature.")
            if claims.get("iss") != EMAIL or claims.get("aud") != self.url + "/token":
                return bad("Invalid JWT: iss or aud")
            if "https://www.googleapis.com/auth/cloud-platform" not in claims.get("scope", "").split():
                return bad("Invalid JWT: scope")
            if not 0 < claims["exp"] - claims["iat"] <= 3600:
                return bad("Invalid JWT: lifetime")
            token = f"ya29.python-fake-{self.token_requests}"
            self.issued.add(token)
            return 200, "application/json", json.dumps(
                {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def model(self, path, headers, body):
        with self.lock:
            self.model_paths.append(path)
            route = ROUTE.match(path.split("?")[0])
            bearer = headers.get("authorization", "").removeprefix("Bearer ")
            if bearer not in self.issued:
                return 401, "application/json", json.dumps({"error": {
                    "code": 401, "status": "UNAUTHENTICATED",
                    "message": "Request had invalid authentication credentials."}})
            sent = json.loads(body)
            ok = route is not None and (
                route.group(1) == "google"
                and (route.group(3) == "generateContent"
                     or (route.group(3) == "streamGenerateContent" and path.endswith("?alt=sse"))
                     # Text embeddings: instances of {content}.
                     or (route.group(3) == "predict"
                         and all("content" in i for i in sent.get("instances") or [None])))
                or route.group(1) == "anthropic"
                and route.group(3) in ("rawPredict", "streamRawPredict")
                and sent.get("anthropic_version") == "vertex-2023-10-16"
                and "model" not in sent
            )
            if not ok:
                return 404, "application/json", json.dumps({"error": {
                    "code": 404, "status": "NOT_FOUND", "message": f"{path} not found"}})
            return self.replies.pop(0)


def start_vertex_gateway(fake, directory, tail="router_settings:\n  num_retries: 0\n"):
    """A gateway with `claude` and `flash` on `fake`, then `tail` (more
    deployments, the router's settings)."""
    key_file = directory / "service-account.json"
    key_file.write_text(fake.key_file())
    config = directory / "config.yaml"
    deployment = (
        "  - model_name: {group}\n"
        "    litellm_params:\n"
        "      model: vertex_ai/{model}\n"
        f"      api_base: {fake.url}\n"
        "      vertex_location: us-east5\n"
    )
    config.write_text(
        "model_list:\n"
        + deployment.format(group="claude", model="claude-3-5-sonnet@20240620")
        + deployment.format(group="flash", model="gemini-2.0-flash")
        + deployment.format(group="embed", model="text-embedding-005")
        + tail
    )
    return start_gateway(config, {
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "VERTEXAI_PROJECT": PROJECT,
    })


def assert_no_vertex_secret_in(fake, logs):
    for token in fake.issued:
        assert token not in logs, "a Vertex access token leaked into the logs"
    assert KEY_PEM.splitlines()[1] not in logs, "the service account key leaked"
    assert "eyJhbGci" not in logs, "a signed assertion leaked into the logs"


@pytest.fixture(scope="module")
def vertex(tmp_path_factory):
    fake = FakeVertex()
    gateway = start_vertex_gateway(fake, tmp_path_factory.mktemp("vertex"))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield fake, client
    code, logs = gateway.stop()
    fake.stop()
    assert code == 0
    assert_no_vertex_secret_in(fake, logs)


def test_a_claude_completion_with_its_usage(vertex):
    fake, client = vertex
    fake.push(200, json.dumps({
        "id": "msg_vertex_1", "type": "message", "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [{"type": "text", "text": "Paris."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }))
    raw = client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "Capital of France?"}])
    assert_completion(raw.parse(), "Paris.", (12, 3, 15))
    # LiteLLM's prices for vertex_ai/claude-3-5-sonnet@20240620 (the
    # snapshot): 3e-06 in, 1.5e-05 out: 12 × 3e-06 + 3 × 1.5e-05.
    assert_response_cost(raw, "0.000081", (12, "3e-06"), (3, "1.5e-05"))


def test_embeddings_through_predict_with_vertex_token_counts(vertex):
    fake, client = vertex
    fake.push(200, json.dumps({"predictions": [
        {"embeddings": {"statistics": {"truncated": False, "token_count": 6}, "values": [0.5, -1.0]}},
        {"embeddings": {"statistics": {"truncated": False, "token_count": 4}, "values": [2.0, 0.25]}},
    ]}))
    # The SDK asks for base64 unless told otherwise, and decodes it.
    raw = client.embeddings.with_raw_response.create(model="embed", input=["first", "second"], dimensions=2)
    response = raw.parse()
    assert [e.embedding for e in response.data] == [[0.5, -1.0], [2.0, 0.25]]
    assert response.usage.prompt_tokens == 10
    # LiteLLM's 1e-07 for text-embedding-005.
    assert_response_cost(raw, "0.000001", (10, "1e-07"))
    assert fake.model_paths[-1].endswith("/publishers/google/models/text-embedding-005:predict")


def test_a_gemini_stream_as_openai_chunks(vertex):
    fake, client = vertex
    parts = ["The capital ", "of France ", "is Paris."]
    events = ""
    for i, part in enumerate(parts):
        event = {"candidates": [{"content": {"role": "model", "parts": [{"text": part}]}}]}
        if i == len(parts) - 1:
            event["candidates"][0]["finishReason"] = "STOP"
            event["usageMetadata"] = {
                "promptTokenCount": 7, "candidatesTokenCount": 9, "totalTokenCount": 16}
        events += f"data: {json.dumps(event)}\r\n\r\n"
    fake.push(200, events, "text/event-stream")
    stream = client.chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "Capital of France?"}],
        stream=True, stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "".join(parts)
    assert finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 9)


def test_a_claude_tool_call(vertex):
    fake, client = vertex
    fake.push(200, json.dumps({
        "id": "msg_vertex_2", "type": "message", "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [{"type": "tool_use", "id": "toolu_vertex", "name": "get_weather",
                     "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 40, "output_tokens": 12},
    }))
    answer = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name) == ("toolu_vertex", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_a_vertex_quota_error_is_a_rate_limit_and_one_token_served_all(vertex):
    fake, client = vertex
    fake.push(429, json.dumps({"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model"}}))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "Hi"}])
    assert fake.token_requests == 1


@pytest.fixture(scope="module")
def with_fallbacks(tmp_path_factory):
    """`claude` and `flash` on Vertex, with `gpt` as their fallback and `big`
    as their context-window fallback, both OpenAI-compatible."""
    fake = FakeVertex()
    gpt, big = ScriptedUpstream(), ScriptedUpstream()
    gateway = start_vertex_gateway(
        fake,
        tmp_path_factory.mktemp("vertex-fallbacks"),
        openai_fallbacks(
            gpt,
            big,
            "[{claude: [gpt]}, {flash: [gpt]}]",
            "[{claude: [big]}, {flash: [big]}]",
        ),
    )
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)

    def script(*replies):
        """Forgets what was asked; the fake answers `replies` in turn."""
        with fake.lock:
            fake.model_paths.clear()
            fake.replies = [(status, "application/json", json.dumps(body)) for status, body in replies]
        for upstream in (gpt, big):
            upstream.reset(default=(200, openai_completion(f"from {upstream.url}")))

    yield client, fake, gpt, big, script
    code, logs = gateway.stop()
    fake.stop()
    gpt.stop()
    big.stop()
    assert code == 0
    assert_no_vertex_secret_in(fake, logs)


def claude_error(kind, message):
    return {"type": "error", "error": {"type": kind, "message": message}}


def google_error(code, status, message):
    return {"error": {"code": code, "status": status, "message": message}}


QUOTA = google_error(
    429, "RESOURCE_EXHAUSTED",
    "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model",
)


def ask(client, group, text="Capital of France?"):
    return client.chat.completions.with_raw_response.create(
        model=group, messages=[{"role": "user", "content": text}])


@pytest.mark.parametrize("group, status, body", [
    ("flash", 429, QUOTA),
    ("claude", 429, QUOTA),
    ("claude", 529, claude_error("overloaded_error", "Overloaded")),
])
def test_a_quota_or_overload_error_is_retried_then_answered_by_a_fallback(with_fallbacks, group, status, body):
    client, fake, gpt, big, script = with_fallbacks
    script((status, body), (status, body))
    gpt.reset((200, openai_completion("from the fallback")))
    raw = ask(client, group)
    assert_answered_by(raw, "gpt", "from the fallback")
    # Retryable: Vertex was asked again before the fallback answered.
    assert len(fake.model_paths) == 2
    assert len(gpt.requests) == 1 and not big.requests


@pytest.mark.parametrize("group, body", [
    ("flash", google_error(
        400, "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).")),
    ("claude", claude_error("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum")),
])
def test_a_context_window_error_goes_to_the_context_window_fallbacks(with_fallbacks, group, body):
    client, fake, gpt, big, script = with_fallbacks
    script((400, body))
    big.reset((200, openai_completion("the long answer")))
    raw = ask(client, group)
    assert_answered_by(raw, "big", "the long answer")
    # Not retried (the prompt will not shrink), not sent to `fallbacks`.
    assert len(fake.model_paths) == 1
    assert len(big.requests) == 1 and not gpt.requests


BLOCKED_PROMPT = {
    "promptFeedback": {
        "blockReason": "SAFETY",
        "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
        ],
    },
    "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
}
CLAUDE_REFUSAL = {
    "id": "msg_vertex_refusal", "type": "message", "role": "assistant",
    "model": "claude-3-5-sonnet-20240620", "content": [],
    "stop_reason": "refusal", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 0},
}


@pytest.mark.parametrize("group, body, code, reasons", [
    ("flash", BLOCKED_PROMPT, "content_filter", ["SAFETY", "HARM_CATEGORY_DANGEROUS_CONTENT"]),
    ("claude", CLAUDE_REFUSAL, "refusal", ["refusal"]),
])
def test_a_refusal_reaches_the_sdk_with_its_reason_and_no_fallback_hides_it(with_fallbacks, group, body, code, reasons):
    client, fake, gpt, big, script = with_fallbacks
    script((200, body))
    with pytest.raises(openai.BadRequestError) as raised:
        ask(client, group)
    error = raised.value
    assert error.status_code == 400
    assert error.code == code, error.body
    for reason in reasons:
        assert reason in error.message, error.body
    for token in fake.issued:
        assert token not in str(error.body)
    # Asked once (a refusal is not retried), and no fallback answered.
    assert len(fake.model_paths) == 1
    assert not gpt.requests and not big.requests
