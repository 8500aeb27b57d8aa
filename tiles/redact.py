"""Secrets out of text: API keys in query strings, credentials in URLs, and the same for urllib3's logs.

Provider URLs may carry an API key (``subscription-key=...``) or userinfo (``http://user:pass@host/``).
:func:`redact_url_text` replaces both with ``***`` in any text; :func:`install_log_redaction` adds a
filter to the urllib3 loggers (which log request lines with their query strings at DEBUG level), so no
key reaches a log line whatever the log level.
"""

from __future__ import annotations

import logging
import re
import threading

_KEY_RE = re.compile(
    r"(?i)((?:key|token|access[-_]?token|api[-_]?key|apikey|subscription-key|sig|signature|secret|password)=)[^&{\s\"']+"
)
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"']+@")
_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
URLLIB3_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.poolmanager", "urllib3.response", "urllib3.util.retry")


def remember_secret(secret: str) -> None:
    """Redact ``secret`` (an API key or password, at least 4 characters) from every later log line."""
    if len(secret) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(secret)


def redact_url_text(text: str) -> str:
    """``text`` with key-like query values, URL userinfo and remembered secrets replaced by ``***``."""
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _USERINFO_RE.sub(r"\1***@", text)
    return _KEY_RE.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message through :func:`redact_url_text`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact_url_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to urllib3's loggers (idempotent)."""
    for name in URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
