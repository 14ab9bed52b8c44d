"""The lean request path (`--client lean`, the default): what the load generator spends per request kept far
below what it measures. HTTP/1.1 on gevent sockets it owns, parsed by geventhttpclient's C parser; bodies
written by orjson from pieces encoded once; SSE read line by line, each line timed at the socket read that
delivered it, before any parsing.

It owns its connections so that a request it abandons (a cut stream, a Cancelled greenlet, a timeout, an
error) always closes its socket, which is how the worker learns to stop generating; a connection goes back
to the idle list only after a complete reply. It records exactly what the SDK path (bench/load/sdk.py) records."""

from __future__ import annotations

import errno
import select
import time
from urllib.parse import urlsplit

import gevent.socket
import orjson
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError, HTTPSocketResponse

from bench.load.exchange import TIMED_OUT, ChatRequest, Exchange, Failure, register, status_error, stream_error

READ_BLOCK = 64 * 1024
STREAM_FIELDS = b',"stream":true,"stream_options":{"include_usage":true}'
WORKER_HEADER = "x-litellm-model-id"


class _TimedSocket:
    """A socket whose every read notes when it returned: a streamed chunk's arrival time, however long the
    parsing of the chunks before it took."""

    __slots__ = ("sock", "read_at")

    def __init__(self, sock: gevent.socket.socket) -> None:
        self.sock, self.read_at = sock, 0.0

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        self.read_at = time.perf_counter()
        return data

    def close(self) -> None:
        self.sock.close()


@register("lean")
class LeanPath:
    def __init__(self, base_url: str, api_key: str, timeout_s: float) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"the lean client speaks plain http to the proxy or a worker, not {base_url!r}; "
                             "use --client openai for https")
        self.address = (url.hostname, url.port or 80)
        self.timeout_s = timeout_s
        self.head = (f"POST {url.path.rstrip('/')}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
                     "Accept: application/json\r\nContent-Length: ").encode("latin-1")
        self.idle: list[gevent.socket.socket] = []  # kept-alive connections, most recent last
        self.encoded: dict[str, bytes] = {}  # a shared prefix's system message, encoded once
        self.tools: dict[int, bytes] = {}  # a tool list (by identity: the module's constant), encoded once

    # -- the body, from pieces
    def body(self, request: ChatRequest) -> bytes:
        fields = {"model": request.model, "max_tokens": request.max_tokens, **request.extra}
        messages = request.messages
        parts: list[bytes] = []
        first = messages[0] if messages else None
        prefix = request.prefix
        if prefix is not None and first is not None and len(first) == 2 and id(first.get("content")) == id(prefix):
            if (encoded := self.encoded.get(prefix)) is None:
                encoded = self.encoded[prefix] = orjson.dumps(first)
            parts.append(encoded)
            messages = messages[1:]
        parts.extend(orjson.dumps(m) for m in messages)
        pieces = [orjson.dumps(fields)[:-1], b',"messages":[', b",".join(parts), b"]"]
        if request.tools:
            if (tools := self.tools.get(id(request.tools))) is None:
                tools = self.tools[id(request.tools)] = orjson.dumps(request.tools)
            pieces += [b',"tools":', tools, b',"tool_choice":"required"']
        if request.stream:
            pieces.append(STREAM_FIELDS)
        pieces.append(b"}")
        return b"".join(pieces)

    # -- connections
    def _connection(self) -> tuple[gevent.socket.socket, bool]:
        """A kept-alive connection the server has not closed, or a new one; and whether it was reused."""
        while self.idle:
            sock = self.idle.pop()
            try:
                if sock.fileno() >= 0 and not select.select([sock], [], [], 0.0)[0]:  # readable when idle: closed
                    return sock, True
            except (OSError, ValueError):
                pass
            sock.close()
        sock = gevent.socket.create_connection(self.address, timeout=self.timeout_s)
        sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
        return sock, False

    def _open(self, payload: bytes) -> tuple[HTTPSocketResponse, _TimedSocket]:
        """Send the request and read the response's headers. A reused connection the server closed meanwhile
        (its keep-alive ran out) gets one retry on a new one, as nothing reached the server."""
        while True:
            sock, reused = self._connection()
            timed = _TimedSocket(sock)
            try:
                sock.sendall(payload)
                return HTTPSocketResponse(timed, block_size=READ_BLOCK, method="POST"), timed
            except HTTPConnectionClosed:
                sock.close()
                if not reused:
                    raise
            except OSError as exc:
                sock.close()
                if not (reused and exc.errno in (errno.ECONNRESET, errno.EPIPE)):
                    raise
            except BaseException:
                sock.close()
                raise

    def _done(self, response: HTTPSocketResponse, timed: _TimedSocket) -> None:
        """A complete reply: its connection may serve the next request."""
        if response.should_close():
            timed.close()
        else:
            self.idle.append(timed.sock)

    # -- one request
    def chat(self, request: ChatRequest, t0: float) -> Exchange:
        body = self.body(request)
        try:
            response, timed = self._open(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        except TimeoutError as exc:
            raise Failure("timeout", TIMED_OUT) from exc
        except (OSError, HTTPParseError) as exc:
            raise Failure("error", f"APIConnectionError: {type(exc).__name__}: {str(exc)[:300]}") from exc
        complete = False
        try:
            if response.status_code >= 400:
                text = response.read().decode("utf-8", "replace")
                complete = response.message_complete
                raise Failure("error", status_error(response.status_code, text)[:300], response.status_code)
            worker = response.get(WORKER_HEADER)
            exchange = Exchange(worker=worker if isinstance(worker, str) else None, e2e_s=0.0)
            if request.stream:
                complete = self._read_stream(request, response, timed, exchange)
                exchange.e2e_s = time.perf_counter() - t0
            else:
                data = response.read()
                complete = response.message_complete
                exchange.e2e_s = time.perf_counter() - t0
                self._read_plain(data, exchange)
            return exchange
        except TimeoutError as exc:
            raise Failure("timeout", TIMED_OUT) from exc
        except (OSError, HTTPParseError, orjson.JSONDecodeError) as exc:
            raise Failure("error", f"APIConnectionError: {type(exc).__name__}: {str(exc)[:300]}") from exc
        finally:  # also on Cancelled: a connection left mid-reply is closed, and the worker stops
            if complete:
                self._done(response, timed)
            else:
                timed.close()

    @staticmethod
    def _read_plain(data: bytes, exchange: Exchange) -> None:
        reply = orjson.loads(data)
        message = reply["choices"][0]["message"]
        exchange.text = message.get("content") or ""
        exchange.tool_calls = [(c["function"]["name"], c["function"]["arguments"])
                               for c in message.get("tool_calls") or [] if c.get("type", "function") == "function"]
        if usage := reply.get("usage"):
            exchange.usage = (usage["prompt_tokens"], usage["completion_tokens"])

    @staticmethod
    def _read_stream(request: ChatRequest, response: HTTPSocketResponse, timed: _TimedSocket,
                     exchange: Exchange) -> bool:
        """Read SSE lines until [DONE], the end of the body, or `stop_after_tokens` content chunks; returns
        whether the reply was read to its end (else the caller closes the connection)."""
        stop_after = request.stop_after_tokens
        token_times, text = exchange.token_times, []
        try:
            while line := response.readline(b"\n"):
                arrived = timed.read_at
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload.startswith(b"[DONE]"):
                    response.read()  # the body's last bytes, so the connection can be kept
                    return response.message_complete
                chunk = orjson.loads(payload)
                if problem := stream_error(chunk):
                    raise Failure("error", problem[:300])
                if usage := chunk.get("usage"):
                    exchange.usage = (usage["prompt_tokens"], usage["completion_tokens"])
                choices = chunk.get("choices")
                if choices and (content := (choices[0].get("delta") or {}).get("content")):
                    token_times.append(arrived)
                    text.append(content)
                    if stop_after and len(token_times) >= stop_after:
                        return False  # closed by the caller: the game cancelled this turn
            return response.message_complete
        finally:
            exchange.text = "".join(text)
