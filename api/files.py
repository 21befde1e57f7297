"""Evidence files over HTTP, for every route that takes or serves them (notices, maintenance
visits): the body read with a limit, stored through ``oversight.attachments``, served with
a safe Content-Disposition. Who may upload or read is the calling route's decision."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from pydantic import BaseModel

from api.problems import Problem
from estate.db import Conn
from oversight import attachments

# the request body of an upload, for the OpenAPI document: the type is read from the
# bytes, whatever the Content-Type header says
UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the file's bytes (JPEG, PNG or PDF; at most 5 MiB)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
DOWNLOAD_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the file, as its bytes say it is",
        "content": {t: {"schema": {"type": "string", "format": "binary"}}
                    for t in ("image/jpeg", "image/png", "application/pdf")},
    },
    404: {},
}  # fmt: skip


class AttachmentOut(BaseModel):
    id: int
    part: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: dt.datetime


def out(a: attachments.Attachment) -> AttachmentOut:
    return AttachmentOut(**{k: getattr(a, k) for k in AttachmentOut.model_fields})


async def _upload(request: Request) -> bytes:
    """The request body, refused with 413 past the attachment limit (before it is read
    whole, so a huge upload costs neither memory nor disk)."""
    limit = attachments.MAX_BYTES
    too_big = Problem(413, "too-large", "File too large",
                      f"at most {limit:,} bytes (5 MiB) per file")  # fmt: skip
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_big
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


Upload = Annotated[bytes, Depends(_upload)]


def store(
    c: Conn, *, subject: str, part: str, filename: str, data: bytes, actor: str, now: dt.datetime
) -> AttachmentOut:
    """Store an uploaded file; 422 with the reason when it is refused."""
    try:
        a = attachments.store(c, subject=subject, part=part, filename=filename, data=data,
                              uploaded_by=actor, now=now)  # fmt: skip
    except attachments.AttachmentError as err:
        raise Problem(422, "bad-file", "File refused", str(err)) from None
    return out(a)


def disposition(filename: str) -> str:
    """Content-Disposition for a download (RFC 6266): an ASCII fallback, and the real name
    percent-encoded (RFC 8187) for the Chinese names people give their photos."""
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def serve(c: Conn, subject: str, attachment_id: int, *, missing: str) -> Response:
    """One stored file of ``subject`` as a download; 404 saying ``missing`` otherwise."""
    got = attachments.content(c, subject, attachment_id)
    if got is None:
        raise Problem(404, "not-found", "Not found", missing)
    a, data = got
    return Response(
        data,
        media_type=a.content_type,
        headers={
            "Content-Disposition": disposition(a.filename),
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{a.sha256}"',
        },
    )
