"""The emulator's object storage: signed result URLs and the SDK's temporary-upload flow.

Results live in ``<data_dir>/files/<task_id>.mp4`` and are served as
``/_files/<name>?Expires=<unix>&OSSAccessKeyId=…&Signature=<hmac>``. Past ``Expires`` or with
a wrong signature the answer is HTTP 403 with an OSS-style XML error, never the video.

Uploads follow the official SDK (``dashscope/utils/oss_utils.py``): ``GET
/api/v1/uploads?action=getPolicy`` hands out a policy whose ``upload_host`` is this server's
``/_oss``; the SDK POSTs the file there as multipart form data (fields ``OSSAccessKeyId``,
``Signature``, ``policy``, ``key``, ``x-oss-object-acl``, ``x-oss-forbid-overwrite``,
``success_action_status``, ``x-oss-content-type``, ``file``) and then sends
``oss://<key>``. Objects are stored in ``<data_dir>/uploads/<key>``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.parser
import email.policy
import hashlib
import hmac
import json
import os
import re
import secrets
import uuid
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ACCESS_KEY_ID = "LTAI5tEmulatorWanNb"
UPLOAD_PREFIX = "dashscope-instant"
UPLOAD_MAX_BYTES = 100 * 1024 * 1024
POLICY_TTL_S = 300
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_KEY_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,200}$")


def oss_error_xml(code: str, message: str, request_id: str, host: str = "emulator") -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
            f"  <Code>{escape(code)}</Code>\n  <Message>{escape(message)}</Message>\n"
            f"  <RequestId>{escape(request_id)}</RequestId>\n  <HostId>{escape(host)}</HostId>\n"
            "</Error>\n")


class ObjectError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ObjectStore:
    def __init__(self, root: Path, secret: bytes):
        self.root = Path(root)
        self.files_dir = self.root / "files"
        self.uploads_dir = self.root / "uploads"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self._secret = secret

    # -- results -------------------------------------------------------------------------------
    def _sig(self, text: str) -> str:
        mac = hmac.new(self._secret, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")

    def signed_query(self, name: str, expires: int) -> str:
        sig = self._sig(f"GET\n{name}\n{expires}")
        return f"Expires={expires}&OSSAccessKeyId={ACCESS_KEY_ID}&Signature={sig}"

    def file_path(self, name: str) -> Path:
        return self.files_dir / name

    def open_result(self, name: str, expires: str | None, signature: str | None,
                    now: float) -> Path:
        """The file behind a signed URL, or :class:`ObjectError` (403/404)."""
        if not _NAME_RE.match(name) or ".." in name:
            raise ObjectError(404, "NoSuchKey", "The specified key does not exist.")
        if not expires or not signature or not expires.isdigit():
            raise ObjectError(403, "AccessDenied", "You have no right to access this object "
                                                   "because of bucket acl.")
        if not hmac.compare_digest(self._sig(f"GET\n{name}\n{expires}"), signature):
            raise ObjectError(403, "SignatureDoesNotMatch", "The request signature we "
                              "calculated does not match the signature you provided. Check "
                              "your key and signing method.")
        if int(expires) < now:
            raise ObjectError(403, "AccessDenied", "Request has expired.")
        path = self.files_dir / name
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ObjectError(404, "NoSuchKey", "The specified key does not exist.") from None
        if real.parent != self.files_dir.resolve() or not real.is_file():
            raise ObjectError(403, "AccessDenied", "Access denied.")
        return real

    # -- uploads -------------------------------------------------------------------------------
    def upload_policy(self, upload_host: str, now: float) -> dict[str, Any]:
        day = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%d")
        upload_dir = f"{UPLOAD_PREFIX}/{secrets.token_hex(16)}/{day}/{uuid.uuid4().hex[:12]}"
        expiration = _dt.datetime.fromtimestamp(now + POLICY_TTL_S, _dt.timezone.utc)
        doc = {"expiration": expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
               "conditions": [["content-length-range", 0, UPLOAD_MAX_BYTES],
                              ["starts-with", "$key", upload_dir]]}
        policy = base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()
        return {"policy": policy, "signature": self._sig("POLICY\n" + policy),
                "upload_dir": upload_dir, "upload_host": upload_host,
                "expire_in_seconds": POLICY_TTL_S, "max_file_size_mb": UPLOAD_MAX_BYTES >> 20,
                "capacity_limit_mb": 999999999, "oss_access_key_id": ACCESS_KEY_ID,
                "x_oss_object_acl": "private", "x_oss_forbid_overwrite": "true"}

    def accept_upload(self, content_type: str, body: bytes, now: float) -> tuple[str, int]:
        """Store one POSTed form upload; returns (key, HTTP status to answer)."""
        fields, file_bytes = parse_form(content_type, body)
        policy, sig, key = fields.get("policy"), fields.get("Signature"), fields.get("key")
        if not policy or not sig or not hmac.compare_digest(self._sig("POLICY\n" + policy), sig):
            raise ObjectError(403, "SignatureDoesNotMatch", "The request signature we "
                              "calculated does not match the signature you provided.")
        try:
            doc = json.loads(base64.b64decode(policy))
            prefix = next(c[2] for c in doc["conditions"]
                          if isinstance(c, list) and c[:2] == ["starts-with", "$key"])
            expires = _dt.datetime.strptime(doc["expiration"], "%Y-%m-%dT%H:%M:%S.000Z")
        except (ValueError, KeyError, StopIteration, TypeError):
            raise ObjectError(400, "InvalidPolicyDocument", "Invalid Policy.") from None
        if expires.replace(tzinfo=_dt.timezone.utc).timestamp() < now:
            raise ObjectError(403, "AccessDenied", "Invalid according to Policy: Policy "
                                                   "expired.")
        if not key or not key.startswith(prefix + "/") or self._safe_key(key) is None:
            raise ObjectError(403, "AccessDenied", "Invalid according to Policy: Policy "
                                                   "Condition failed: [\"starts-with\", "
                                                   "\"$key\", ...]")
        if file_bytes is None:
            raise ObjectError(400, "InvalidArgument", "The form has no file field.")
        path = self._safe_key(key)
        assert path is not None
        if path.exists() and fields.get("x-oss-forbid-overwrite") == "true":
            raise ObjectError(409, "FileAlreadyExists", "The object you specified already "
                                                        "exists and can not be overwritten.")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(file_bytes)
        os.replace(tmp, path)
        status = 200 if fields.get("success_action_status") == "200" else 204
        return key, status

    def _safe_key(self, key: str) -> Path | None:
        parts = key.split("/")
        if len(parts) < 2 or parts[0] != UPLOAD_PREFIX or not all(
                _KEY_PART_RE.match(p) and ".." not in p for p in parts):
            return None
        return self.uploads_dir.joinpath(*parts)

    def resolve_oss(self, url: str) -> str | None:
        """``oss://dashscope-instant/…`` → the stored file's path, or None."""
        if not url.startswith("oss://"):
            return None
        path = self._safe_key(url[len("oss://"):])
        if path is None or not path.is_file():
            return None
        return str(path)


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], bytes | None]:
    """multipart/form-data → (text fields, the ``file`` field's bytes). Uses the standard
    library's MIME parser, so the emulator needs no multipart dependency."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ObjectError(400, "InvalidArgument", "Content-Type must be multipart/form-data.")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise ObjectError(400, "InvalidArgument", "Malformed multipart body.")
    fields: dict[str, str] = {}
    file_bytes = None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        if not isinstance(payload, bytes):  # decode=True gives bytes for a leaf part
            continue
        if name == "file":
            file_bytes = payload
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, file_bytes
