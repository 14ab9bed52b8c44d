"""The OpenAI SDK's request path (`--client openai`): what a game studio's own client would likely use, kept
as the reference the lean path (bench/load/lean.py) is checked against."""

from __future__ import annotations

import time

import httpx
import openai

from bench.load.exchange import TIMED_OUT, ChatRequest, Exchange, Failure, register


@register("openai")
class OpenAIPath:
    def __init__(self, base_url: str | openai.OpenAI, api_key: str = "", timeout_s: float = 0.0) -> None:
        self.client = base_url if isinstance(base_url, openai.OpenAI) else openai.OpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s)

    def chat(self, request: ChatRequest, t0: float) -> Exchange:
        body: dict = dict(model=request.model, messages=request.messages, max_tokens=request.max_tokens,
                          extra_body=request.extra)
        if request.tools:
            body.update(tools=request.tools, tool_choice="required")
        try:
            return self._streamed(request, body, t0) if request.stream else self._plain(body, t0)
        except openai.APITimeoutError as exc:
            raise Failure("timeout", str(exc)[:300] or TIMED_OUT) from exc
        except openai.APIStatusError as exc:
            raise Failure("error", str(exc)[:300], exc.status_code) from exc
        except openai.APIError as exc:
            raise Failure("error", f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        # Raised while iterating a stream, where the SDK no longer wraps httpx's errors in its own.
        except httpx.TimeoutException as exc:
            raise Failure("timeout", TIMED_OUT) from exc
        except httpx.HTTPError as exc:
            raise Failure("error", f"APIConnectionError: {type(exc).__name__}: {str(exc)[:300]}") from exc

    def _plain(self, body: dict, t0: float) -> Exchange:
        raw = self.client.chat.completions.with_raw_response.create(**body)
        reply = raw.parse()
        e2e = time.perf_counter() - t0
        message = reply.choices[0].message
        usage = reply.usage
        return Exchange(worker=raw.headers.get("x-litellm-model-id"), e2e_s=e2e, text=message.content or "",
                        usage=(usage.prompt_tokens, usage.completion_tokens) if usage else None,
                        tool_calls=[(c.function.name, c.function.arguments) for c in message.tool_calls or []
                                    if c.type == "function"])

    def _streamed(self, request: ChatRequest, body: dict, t0: float) -> Exchange:
        stop_after = request.stop_after_tokens
        token_times: list[float] = []
        usage = None
        text: list[str] = []
        with self.client.chat.completions.with_streaming_response.create(
            **body, stream=True, stream_options={"include_usage": True}
        ) as raw:
            worker = raw.headers.get("x-litellm-model-id")
            for chunk in raw.parse():
                if chunk.usage:
                    usage = chunk.usage
                if chunk.choices and chunk.choices[0].delta.content:
                    token_times.append(time.perf_counter())
                    text.append(chunk.choices[0].delta.content)
                    if stop_after and len(token_times) >= stop_after:
                        break  # leaving the block closes the connection: the game cancelled this turn
        return Exchange(worker=worker, e2e_s=time.perf_counter() - t0, text="".join(text), token_times=token_times,
                        usage=(usage.prompt_tokens, usage.completion_tokens) if usage else None)
