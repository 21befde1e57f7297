"""Evidence attached to a record (photos, scans): the ``attachments`` table.

A file belongs to a subject (``notice:12``, ``maintenance:7``) and a part of it (``problem 2
rectify``). Its type is read from its first bytes, never taken from the client: JPEG, PNG or
PDF, at most ``MAX_BYTES``. Files are content-addressed (SHA-256): the same file sent twice
for the same part is stored once. Who may read one is decided by whoever may see the
subject; this module only stores and returns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from estate.db import Conn

MAX_BYTES = 5 * 1024 * 1024
MAX_PER_SUBJECT = 50
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\\"]")


class AttachmentError(ValueError):
    """The file cannot be stored; the message says why."""


@dataclass(frozen=True)
class Attachment:
    id: int
    subject: str
    part: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: dt.datetime


COLUMNS = "id, subject, part, filename, content_type, size, sha256, uploaded_by, uploaded_at"


def sniff(data: bytes) -> str:
    """The content type the bytes really are, or an AttachmentError naming what is accepted."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    raise AttachmentError("the file is not a JPEG, PNG or PDF (its first bytes say so)")


def clean_name(name: str) -> str:
    """A file name safe to send back in Content-Disposition: its last path part, no
    control characters or quotes, at most 120 characters."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = _UNSAFE.sub("_", base).strip() or "file"
    return base[-120:]


def store(
    conn: Conn,
    *,
    subject: str,
    part: str,
    filename: str,
    data: bytes,
    uploaded_by: str,
    now: dt.datetime,
) -> Attachment:
    """Store ``data`` for ``subject``/``part``; the same bytes again return the stored one."""
    if not data:
        raise AttachmentError("the file is empty")
    if len(data) > MAX_BYTES:
        raise AttachmentError(
            f"the file is {len(data):,} bytes; at most {MAX_BYTES:,} (5 MiB) are accepted"
        )
    kind = sniff(data)
    digest = hashlib.sha256(data).hexdigest()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"attachments:{subject}",))
        row = conn.execute(
            f"SELECT {COLUMNS} FROM attachments"  # noqa: S608 (constant)
            " WHERE subject = %s AND part = %s AND sha256 = %s",
            (subject, part, digest),
        ).fetchone()
        if row is not None:
            return Attachment(*row)
        count = conn.execute(
            "SELECT count(*) FROM attachments WHERE subject = %s", (subject,)
        ).fetchone()
        if count is not None and int(count[0]) >= MAX_PER_SUBJECT:
            raise AttachmentError(f"{subject} has {MAX_PER_SUBJECT} files already")
        got = conn.execute(
            "INSERT INTO attachments (subject, part, filename, content_type, size, sha256,"  # noqa: S608
            " data, uploaded_by, uploaded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" RETURNING {COLUMNS}",
            (subject, part, clean_name(filename), kind, len(data), digest, data, uploaded_by,
             now),
        ).fetchone()  # fmt: skip
    assert got is not None
    return Attachment(*got)


def listing(conn: Conn, subject: str) -> list[Attachment]:
    """The subject's files, oldest first (without their bytes)."""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM attachments WHERE subject = %s ORDER BY id",  # noqa: S608
        (subject,),
    ).fetchall()
    return [Attachment(*r) for r in rows]


def content(conn: Conn, subject: str, attachment_id: int) -> tuple[Attachment, bytes] | None:
    """One file of the subject with its bytes; None when the subject has no such file."""
    row = conn.execute(
        f"SELECT {COLUMNS}, data FROM attachments WHERE subject = %s AND id = %s",  # noqa: S608
        (subject, attachment_id),
    ).fetchone()
    if row is None:
        return None
    return Attachment(*row[:-1]), bytes(row[-1])
