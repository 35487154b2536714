"""The official OpenAI Python SDK against Tollgate's routes beside chat:
embeddings (float and base64), legacy completions (streamed and not) and
models.retrieve, with their exact costs."""

import base64
import json
import struct
import urllib.request
from decimal import Decimal

import openai
import pytest

from conftest import MASTER_KEY, ROOT, start_gateway

EXPECTED = "Hello from the Tollgate mock, streamed word by word."
EMBED_PRICE = Decimal("0.0000001")
INSTRUCT_IN = Decimal("0.0000015")
INSTRUCT_OUT = Decimal("0.000002")


@pytest.fixture(scope="module")
def endpoints():
    proc = start_gateway(
        ROOT / "tests/python/endpoints.yaml", {"TOLLGATE_TEST_MASTER_KEY": MASTER_KEY}
    )
    yield {"url": proc.url, "key": MASTER_KEY}
    code, logs = proc.stop()
    assert code == 0, "the gateway exits cleanly on SIGTERM"
    assert "embeddings" in logs and "completions" in logs, logs
    assert MASTER_KEY not in logs, "the master key leaked into the logs"


def http(gateway, method, path, body=None):
    """A plain HTTP call with the gateway's key; the status and the JSON."""
    request = urllib.request.Request(
        gateway["url"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": "Bearer " + gateway["key"], "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, json.loads(answer.read())


def client(gateway):
    return openai.OpenAI(
        base_url=gateway["url"] + "/v1", api_key=gateway["key"], max_retries=0, timeout=30
    )


def test_embeddings_as_floats_and_as_base64_agree(endpoints):
    sdk = client(endpoints)
    raw = sdk.embeddings.with_raw_response.create(
        model="mock-embed", input=["first", "second"], encoding_format="float", dimensions=4
    )
    floats = raw.parse()
    assert [d.index for d in floats.data] == [0, 1]
    assert all(len(d.embedding) == 4 for d in floats.data)
    tokens = floats.usage.prompt_tokens
    assert tokens > 0
    assert Decimal(raw.headers["x-tollgate-response-cost"]) == tokens * EMBED_PRICE

    # Asked as base64 through the raw HTTP API: the answer is the base64 of
    # little-endian float32s, passed through, decoding to the same vectors.
    status, answer = http(
        endpoints,
        "POST",
        "/v1/embeddings",
        {"model": "mock-embed", "input": ["first", "second"], "encoding_format": "base64",
         "dimensions": 4},
    )
    assert status == 200, answer
    encoded = answer["data"][1]["embedding"]
    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<4f", base64.b64decode(encoded)))
    assert decoded == floats.data[1].embedding

    # The SDK's default (it asks for base64 and decodes it itself).
    default = sdk.embeddings.create(model="mock-embed", input="first", dimensions=4)
    assert default.data[0].embedding == floats.data[0].embedding

    # Token ids are an input too.
    tokens_in = sdk.embeddings.create(model="mock-embed", input=[[1, 2, 3], [4]])
    assert len(tokens_in.data) == 2


def test_legacy_completion(endpoints):
    raw = client(endpoints).completions.with_raw_response.create(
        model="mock-instruct", prompt="Say hello", max_tokens=20
    )
    completion = raw.parse()
    assert completion.object == "text_completion"
    assert completion.choices[0].text == EXPECTED
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    expected = usage.prompt_tokens * INSTRUCT_IN + usage.completion_tokens * INSTRUCT_OUT
    assert Decimal(raw.headers["x-tollgate-response-cost"]) == expected


def test_streamed_legacy_completion(endpoints):
    stream = client(endpoints).completions.create(
        model="mock-instruct",
        prompt="Say hello",
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, chunks = "", None, 0
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.text
    assert text == EXPECTED
    assert chunks > 3, "the answer arrives in several chunks"
    assert usage is not None and usage.completion_tokens > 0


def test_models_retrieve_and_wrong_routes(endpoints):
    sdk = client(endpoints)
    model = sdk.models.retrieve("mock-embed")
    assert model.id == "mock-embed" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"
    # An embedding group does not chat, and a completion group does not embed.
    with pytest.raises(openai.BadRequestError) as chat:
        sdk.chat.completions.create(
            model="mock-embed", messages=[{"role": "user", "content": "hi"}]
        )
    assert "/v1/embeddings" in chat.value.message
    with pytest.raises(openai.BadRequestError):
        sdk.embeddings.create(model="mock-instruct", input="hi")

    status, info = http(endpoints, "GET", "/model/info")
    assert status == 200, info
    by_name = {d["model_name"]: d for d in info["data"]}
    assert by_name["mock-embed"]["model_info"]["mode"] == "embedding"
    assert by_name["mock-embed"]["model_info"]["input_cost_per_token"] == float(EMBED_PRICE)
    assert by_name["mock-instruct"]["litellm_params"]["model"] == "mock/mock-instruct"
