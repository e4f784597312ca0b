"""Every console form carries two hidden fields, checked on every POST:

- `csrf_token`: the session's CSRF token (missing or wrong: a 403 page);
- `form_nonce`: a one-time token issued to this session when the page was drawn; actions
  record it in the ledger, so the same form posted twice applies once (a 409 page).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import Request

from worker.web.console.sessions import Session, SessionKeys

#: Forms are a few short fields; anything larger is not ours.
MAX_FORM_BYTES = 16_384
MAX_FIELDS = 20


class ForbiddenError(Exception):
    """The POST is refused (403). `str()` is the one line shown on the page."""


@dataclass(frozen=True, slots=True)
class CheckedForm:
    fields: dict[str, str]
    nonce: str | None

    def text(self, name: str) -> str:
        return self.fields.get(name, "").strip()


def form_tokens(keys: SessionKeys, session: Session) -> dict[str, str]:
    """The hidden fields of one new form."""
    return {"csrf_token": keys.csrf_token(session), "form_nonce": keys.form_nonce(session)}


async def _read_fields(request: Request) -> dict[str, str]:
    """A urlencoded form body (what our forms send), read up to `MAX_FORM_BYTES`."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ForbiddenError("not a console form")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ForbiddenError("the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise ForbiddenError("the form cannot be read") from None
    return dict(pairs)


async def checked_form(
    request: Request, keys: SessionKeys, session: Session, *, needs_nonce: bool
) -> CheckedForm:
    fields = await _read_fields(request)
    if not keys.csrf_ok(session, fields.get("csrf_token")):
        raise ForbiddenError(
            "the form's security token is missing or wrong: reload the page and try again"
        )
    nonce = fields.get("form_nonce")
    if needs_nonce and not keys.nonce_ok(session, nonce):
        raise ForbiddenError("the form's one-time token is missing or wrong: reload the page")
    return CheckedForm(fields, nonce if needs_nonce else None)
