"""An annotator for any OpenAI-compatible chat endpoint (``POST {base_url}/chat/completions``).

Standard library only (``urllib.request``). Requests are spaced by ``min_interval``,
retried with exponential backoff on timeouts, connection errors, 429, 5xx and malformed
bodies (never on other 4xx, which a retry cannot fix), and every successful response is
cached on disk under a hash of the request, so rerunning an analysis costs nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from interpret_shift.core.files import atomic_write_text
from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.ffn.annotators import Annotation, chat_messages, parse_reply

BASE_URL_ENV = "INTERPRET_SHIFT_OPENAI_BASE_URL"
MODEL_ENV = "INTERPRET_SHIFT_OPENAI_MODEL"
KEY_ENV = "OPENAI_API_KEY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "interpret-shift" / "openai"


class _Retryable(Exception):
    """A failure another attempt may fix; ``wait`` is the server's Retry-After, if any."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class OpenAIAnnotator:
    """Few-shot prompts a chat endpoint; base URL, model and key from options or, when
    not given, from the environment at the time of the request."""

    name = "openai"
    description = "any OpenAI-compatible chat endpoint, with retries, rate limit and a disk cache"

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        cache: bool = True,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        min_interval: float = 0.0,
        temperature: float = 1.0,
        top_p: float = 0.9,
        max_tokens: int = 64,
        words: int = 30,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.options = {"base_url": base_url, "model": model, "api_key": api_key,
                        "cache_dir": cache_dir}  # fmt: skip
        self.cache = cache
        self.timeout, self.retries = timeout, retries
        self.backoff, self.max_backoff, self.min_interval = backoff, max_backoff, min_interval
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.words = words
        self.sleep = sleep
        self.requests_sent = 0
        self._last_request = -float("inf")

    # settings are read when used, so an instance made at import sees the environment of now
    @property
    def base_url(self) -> str:
        return (
            self.options["base_url"] or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        ).rstrip("/")

    @property
    def model(self) -> str:
        model = self.options["model"] or os.environ.get(MODEL_ENV)
        if not model:
            raise InterpretShiftError(
                "The openai annotator needs a model name.",
                f"Pass model=NAME or set {MODEL_ENV} (e.g. gpt-4o-mini, or the name your "
                "local server serves).",
            )
        return model

    @property
    def api_key(self) -> str | None:
        return self.options["api_key"] or os.environ.get(KEY_ENV)

    @property
    def cache_dir(self) -> Path:
        return Path(self.options["cache_dir"] or default_cache_dir())

    @property
    def url(self) -> str:
        """``/chat/completions`` under the base URL; a bare host gets the usual ``/v1``."""
        base = self.base_url if urlsplit(self.base_url).path else self.base_url + "/v1"
        return base + "/chat/completions"

    def annotate(self, words: Sequence[str], seed: int = 0) -> Annotation:
        body = {
            "model": self.model,
            "messages": chat_messages(words, self.words),
            "seed": seed,
            **self.sampling,
        }
        return parse_reply(self.complete(body), seed)

    # -- one chat completion, cached -------------------------------------------------------
    def complete(self, body: dict) -> str:
        """The reply text for a request body, from the cache or from the endpoint."""
        request = json.dumps({"url": self.url, "body": body}, sort_keys=True)
        path = self.cache_dir / f"{hashlib.sha256(request.encode()).hexdigest()}.json"
        if self.cache and path.exists():
            try:
                return _content(json.loads(path.read_text())["response"])
            except (ValueError, KeyError, TypeError):
                pass  # a damaged cache entry is simply fetched again
        response = self._post_with_retries(body)
        if self.cache:
            atomic_write_text(
                path, json.dumps({"request": json.loads(request), "response": response}, indent=1)
            )
        return _content(response)

    def _post_with_retries(self, body: dict) -> dict:
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                return self._post(body)
            except _Retryable as error:
                if attempt == attempts - 1:
                    raise InterpretShiftError(
                        f"The chat endpoint {self.url} failed {attempts} times; last: {error}.",
                        "Check that the server is up and the base URL is right; for a slow "
                        "or busy server raise timeout= or retries=.",
                    ) from error
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                self.sleep(min(self.max_backoff, error.wait) if error.wait else delay)
        raise AssertionError("unreachable")

    def _post(self, body: dict) -> dict:
        wait = self._last_request + self.min_interval - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last_request = time.monotonic()
        self.requests_sent += 1
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                text = reply.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            detail = _error_detail(error)
            if error.code == 429 or error.code >= 500:
                raise _Retryable(f"HTTP {error.code} {detail}", _retry_after(error)) from error
            raise _client_error(error.code, detail, self.url) from error
        except TimeoutError as error:
            raise _Retryable(f"no answer within {self.timeout} s") from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise _Retryable(f"no answer within {self.timeout} s") from error
            raise _Retryable(f"cannot connect ({error.reason})") from error
        except (OSError, http.client.HTTPException) as error:  # reset or cut mid-read
            raise _Retryable(f"connection failed ({error})") from error
        try:
            response = json.loads(text)
            _content(response)
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise _Retryable(f"malformed response body {text[:120]!r}") from error
        return response


def _content(response: dict) -> str:
    content = response["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise TypeError("message content is not text")
    return content


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        text = error.read().decode("utf-8", errors="replace")
        message = json.loads(text).get("error", {})
        return str(message.get("message", message) if isinstance(message, dict) else message)
    except Exception:
        return str(error.reason)


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    try:
        return float(error.headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None


def _client_error(code: int, detail: str, url: str) -> InterpretShiftError:
    if code in (401, 403):
        fix = f"Check the API key: pass api_key= or set {KEY_ENV}."
    elif code == 404:
        fix = (
            f"Check the base URL (it should end where /chat/completions begins, e.g. "
            f"http://host:8000/v1; set {BASE_URL_ENV}) and the model name ({MODEL_ENV})."
        )
    else:
        fix = "The server rejected the request; check the model name and options."
    return InterpretShiftError(f"The chat endpoint {url} answered HTTP {code}: {detail}.", fix)
