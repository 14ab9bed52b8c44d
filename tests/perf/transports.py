"""Which HTTP client the lean path is built on: CPU-ms per request of bare transports, each reading a reply as the
bench must (plain: the JSON body; streamed: SSE line by line, each line timed, then parsed with orjson), against
the fake worker in its own process. A benchmark figure, not a test. `python -m tests.perf.transports [N]`.

The OpenAI SDK is timed as bench/load/sdk.py uses it; geventhttpclient (Locust's FastHttpUser's) and httpx with
orjson are the candidates. The request is small (a 200-word prompt), so this is the transport's own cost."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import httpx  # noqa: E402
import openai  # noqa: E402
import orjson  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402
from geventhttpclient.url import URL  # noqa: E402

from tests.perf.client_cost import SERVER  # noqa: E402

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello " * 200}], "max_tokens": 150}
STREAM = b',"stream":true,"stream_options":{"include_usage":true}}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-fake"}


def sdk(url: str, stream: bool) -> Callable[[], None]:
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-fake", max_retries=0)

    def one() -> None:
        if stream:
            with client.chat.completions.with_streaming_response.create(
                    **BODY, stream=True, stream_options={"include_usage": True}) as raw:  # type: ignore[call-overload]
                for chunk in raw.parse():
                    if chunk.choices and chunk.choices[0].delta.content:
                        time.perf_counter()
        else:
            client.chat.completions.with_raw_response.create(**BODY).parse()  # type: ignore[call-overload]
    return one


def ghc(url: str, stream: bool) -> Callable[[], None]:
    parsed = URL(url)
    client = HTTPClient(parsed.host, parsed.port, concurrency=10, network_timeout=60)
    body = orjson.dumps(BODY)
    body = body[:-1] + STREAM if stream else body

    def one() -> None:
        response = client.request("POST", "/v1/chat/completions", body=body, headers=HEADERS)
        if not stream:
            orjson.loads(response.read())
            return
        while line := response.readline(b"\n"):
            time.perf_counter()
            if line.startswith(b"data: {"):
                orjson.loads(line[6:])
    return one


def hx(url: str, stream: bool) -> Callable[[], None]:
    client = httpx.Client(base_url=url, timeout=60)
    body = orjson.dumps(BODY)
    body = body[:-1] + STREAM if stream else body

    def one() -> None:
        if not stream:
            orjson.loads(client.post("/v1/chat/completions", content=body, headers=HEADERS).content)
            return
        with client.stream("POST", "/v1/chat/completions", content=body, headers=HEADERS) as response:
            for line in response.iter_lines():
                time.perf_counter()
                if line.startswith("data: {"):
                    orjson.loads(line[6:])
    return one


def main() -> int:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        for name, make in (("openai SDK", sdk), ("geventhttpclient", ghc), ("httpx", hx)):
            for stream in (False, True):
                one = make(url, stream)
                for _ in range(20):
                    one()
                cpu = time.process_time()
                for _ in range(requests):
                    one()
                per = (time.process_time() - cpu) * 1000 / requests
                print(f"{name:17s} {'streamed 150' if stream else 'plain':12s} {per:7.3f} CPU-ms/request", flush=True)
    finally:
        server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
