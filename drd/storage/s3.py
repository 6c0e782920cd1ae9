"""S3 object store on boto3: AWS and S3-compatible endpoints (MinIO, Ceph, moto).

The only module that imports boto3/botocore. Guarantees (see ``drd.storage.base``):

Atomic:
    S3 makes an object visible only once it is complete (``put_object``, or a
    multipart upload for data from ``multipart_threshold`` on).
Conditional:
    ``put_if_absent`` sends ``If-None-Match: *``; 412 means the key exists.
Bounded in time:
    connect and read timeouts on every request; botocore's own retries are off and
    every call goes through one ``drd.retry.RetryPolicy`` instead (5xx, throttling,
    timeouts, dropped connections are retried; 4xx such as 403/404/412 are not).
Errors:
    ``ClientError``/``BotoCoreError`` become ``StorageError`` naming ``s3://bucket/key``,
    the operation and the S3 error code, redacted, never with credentials.
Object Lock:
    A bucket with Object Lock is versioned: a plain DeleteObject only hides the data
    behind a delete marker, and the locked (or no longer locked) versions stay and are
    billed. On such a bucket ``delete``/``delete_many`` delete the key's versions by
    VersionId, the current one last, so a refusal leaves the object as it was; S3
    refuses locked versions (403) and that becomes ``ObjectLockedError`` with the
    retain-until date read from the version. Retention is never bypassed and never
    shortened. Whether the bucket has Object Lock is asked once per store, on the
    first delete (or given as ``object_lock``); any answer but "enabled" keeps the
    plain delete, so buckets without Object Lock behave exactly as before.
    ``GetObjectRetention`` is not used (moto does not implement it): HeadObject
    returns the same mode and date.

boto3 >= 1.36 adds CRC checksums to every request by default, which several
S3-compatible stores reject: checksums are only sent where S3 requires them
(``when_required``), and ``put_object`` carries ``Content-MD5`` instead.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    SSLError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from drd.errors import StorageError
from drd.log import get_logger
from drd.redact import redact
from drd.retry import RetryPolicy
from drd.storage.base import (
    BucketLockStatus,
    LifecycleTransition,
    LockMode,
    ObjectInfo,
    ObjectLockedError,
    ObjectNotFoundError,
    ObjectStore,
    check_key,
    check_lock_args,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
log = get_logger("drd.storage")

MIB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 16 * MIB
DELETE_BATCH = 1000  # S3's limit for one DeleteObjects request
LIFECYCLE_ID_PREFIX = "drd "  # rules drd manages; other rules in the bucket are kept

RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",  # 409 while another conditional write is in flight
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "AccessDenied",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
    }
)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_retryable(exc: BaseException) -> bool:
    """Transient S3 failures: 5xx, throttling, timeouts, dropped connections."""
    if isinstance(exc, ClientError):
        status = _status(exc)
        return status >= 500 or status == 429 or _code(exc) in RETRYABLE_CODES
    if isinstance(exc, SSLError):
        # certificate problems do not heal by themselves; a TLS session cut short does
        return "certif" not in str(exc).lower()
    return isinstance(exc, BotoConnectionError | HTTPClientError | IncompleteReadError)


def default_retry_policy() -> RetryPolicy:
    return RetryPolicy(attempts=5, deadline=120.0, base_delay=0.5, retryable=is_retryable)


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in CREDENTIAL_CODES or _status(exc) == 403:
            return "the endpoint refused the request: check the access keys and bucket policy"
        if code == "NoSuchBucket":
            return "the bucket does not exist: create it or fix the repository's bucket name"
        return None
    if isinstance(exc, SSLError):
        return "TLS failed: check the endpoint's certificate and the repository's ca_file"
    if isinstance(exc, NoCredentialsError):
        return "no credentials found: set the repository's credentials or the AWS environment"
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return "cannot reach the storage endpoint: check endpoint, port and network"
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        message = error.get("Message") or ""
        text = f"{_code(exc) or 'error'} (HTTP {_status(exc)})"
        return f"{text}: {message}" if message else text
    return f"{type(exc).__name__}: {exc}"


class S3Store(ObjectStore):
    """Objects under ``prefix/`` in one bucket.

    ``access_key``/``secret_key`` (and ``session_token``) are static credentials; leave
    them None to use boto3's default chain (environment, profile, IRSA, instance role).
    ``max_workers`` bounds the parts uploaded in parallel by one multipart upload and
    sizes the connection pool. ``retry`` and ``client`` are injectable for tests.
    ``object_lock`` says whether the bucket has Object Lock (deletes then go by
    version); None asks the bucket on the first delete, except with an injected
    ``client`` (unit tests script every call), where None means no.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        path_style: bool = False,
        ca_file: Path | str | None = None,
        verify_tls: bool = True,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        max_workers: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        retry: RetryPolicy | None = None,
        client: S3Client | None = None,
        object_lock: bool | None = None,
    ) -> None:
        if (access_key is None) != (secret_key is None):
            raise StorageError(
                f"s3://{bucket}: give both an access key and a secret key, or neither"
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._prefix = f"{self.prefix}/" if self.prefix else ""
        self.endpoint_url = endpoint_url
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._retry = retry or default_retry_policy()
        self._threshold = multipart_threshold
        self._max_workers = max_workers
        self._object_lock = object_lock
        if object_lock is None and client is not None:
            self._object_lock = False
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 5 * MIB),
            max_concurrency=max_workers,
            use_threads=max_workers > 1,
        )
        if client is None:
            session = boto3.session.Session(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                aws_session_token=session_token,
                region_name=region,
            )
            verify: bool | str | None = None
            if not verify_tls:
                verify = False
            elif ca_file is not None:
                verify = str(ca_file)
            config = Config(
                region_name=region,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # retries go through drd.retry.RetryPolicy; 1 = the first attempt only
                retries={"total_max_attempts": 1, "mode": "standard"},
                max_pool_connections=max(10, 2 * max_workers),
                s3={"addressing_style": "path" if path_style else "virtual"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                tcp_keepalive=True,
            )
            client = session.client("s3", endpoint_url=endpoint_url, verify=verify, config=config)
        self._client: S3Client = client

    def sibling(self, prefix: str) -> S3Store:
        """A store on the same bucket, client and settings under another ``prefix``.

        The two share one client: close only one of them. Used to reach a repository's
        root (``filestore/`` and ``pgbackrest/`` side by side) from its filestore store.
        """
        other = S3Store(
            self.bucket,
            prefix,
            endpoint_url=self.endpoint_url,
            max_workers=self._max_workers,
            multipart_threshold=self._threshold,
            retry=self._retry,
            client=self._client,
            object_lock=self._object_lock,
        )
        other._object_lock = self._object_lock  # None stays "ask the bucket"
        return other

    # -- plumbing ----------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return self._prefix + check_key(key)

    def _where(self, key: str | None) -> str:
        where = f"s3://{self.bucket}/{self._full(key)}" if key is not None else self.location
        if self.endpoint_url:
            where += f" (endpoint {self.endpoint_url})"
        return where

    def _call(self, op: str, key: str | None, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the retry policy; turn boto errors into ``StorageError``."""

        def on_retry(attempt: int, exc: BaseException, wait: float) -> None:
            log.warning(
                "s3_retry",
                operation=op,
                bucket=self.bucket,
                key=key,
                attempt=attempt,
                wait=round(wait, 2),
                error=redact(_describe(exc)),
            )

        try:
            return self._retry.call(fn, on_retry=on_retry)
        except (ClientError, BotoCoreError) as exc:
            message = redact(f"{self._where(key)}: {op} failed: {_describe(exc)}")
            raise StorageError(message, hint=_hint(exc)) from exc

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"s3://{self.bucket}/{self._full(key)}: object {key} not found")

    @staticmethod
    def _lock_args(
        location: str, retain_until: datetime | None, lock_mode: LockMode | None
    ) -> dict[str, Any]:
        if not check_lock_args(location, retain_until, lock_mode):
            return {}
        assert lock_mode is not None  # noqa: S101 - check_lock_args refused half arguments
        return {"ObjectLockMode": lock_mode.upper(), "ObjectLockRetainUntilDate": retain_until}

    # -- writes ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None = None,
        lock_mode: LockMode | None = None,
    ) -> None:
        full = self._full(key)
        lock = self._lock_args(self._where(key), retain_until, lock_mode)
        if len(data) >= self._threshold and not lock:
            # Object Lock puts stay single PUTs (up to 5 GiB): moto ignores lock headers
            # on multipart uploads, and AWS wants a checksum on every part of one.

            def upload() -> None:
                self._client.upload_fileobj(
                    io.BytesIO(data), self.bucket, full, Config=self._transfer
                )

            self._call("multipart upload", key, upload)
            return
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - Content-MD5

        def put_object() -> None:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data, ContentMD5=md5, **lock)

        self._call("put", key, put_object)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        full = self._full(key)
        digest = hashlib.md5(data).digest()  # noqa: S324 - Content-MD5 and ETag comparison
        attempts = 0

        def create() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=full,
                    Body=data,
                    ContentMD5=base64.b64encode(digest).decode(),
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if _status(exc) != 412 and _code(exc) != "PreconditionFailed":
                    raise
                if attempts == 1:
                    return False
                # A retried request may have lost the answer of an attempt that did
                # create the object: it is ours if it holds exactly our bytes.
                info = self.head(key)
                return info is not None and info.etag == digest.hex()
            return True

        return self._call("conditional put", key, create)

    def delete(self, key: str) -> None:
        full = self._full(key)
        if self._lock_enabled():
            self._delete_versions_of([key])
            return
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))

    def delete_many(self, keys: Sequence[str]) -> None:
        if self._lock_enabled():
            self._delete_versions_of(keys)
            return
        full_keys = [self._full(key) for key in keys]
        for start in range(0, len(full_keys), DELETE_BATCH):
            batch = full_keys[start : start + DELETE_BATCH]

            def delete_batch(batch: list[str] = batch) -> Any:
                return self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )

            response = self._call(f"delete of {len(batch)} objects", None, delete_batch)
            errors = response.get("Errors") or []
            if errors:
                shown = ", ".join(
                    f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip()
                    for e in errors[:5]
                )
                raise StorageError(
                    redact(f"{self._where(None)}: {len(errors)} objects not deleted: {shown}")
                )

    # -- deletes on an Object Lock bucket ------------------------------------------------

    def _lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock; asked once. Unknown counts as no."""
        if self._object_lock is None:

            def fetch() -> bool:
                try:
                    response = self._client.get_object_lock_configuration(Bucket=self.bucket)
                except ClientError as exc:
                    if _status(exc) >= 500 and _status(exc) != 501:
                        raise  # retried, then reported
                    # no configuration (404), not allowed to ask (403), not implemented
                    # (501): behave as before Object Lock existed
                    log.debug("s3_object_lock_unknown", bucket=self.bucket, code=_code(exc))
                    return False
                config = response.get("ObjectLockConfiguration") or {}
                return config.get("ObjectLockEnabled") == "Enabled"

            self._object_lock = self._call("get object lock configuration", None, fetch)
        return self._object_lock

    def _versions(self, full: str) -> builtins.list[tuple[str, bool]]:
        """(version id, is latest) of exactly ``full``, delete markers included."""
        found: builtins.list[tuple[str, bool]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
        while True:
            response = self._client.list_object_versions(**kwargs)
            for item in [*response.get("Versions", []), *response.get("DeleteMarkers", [])]:
                if item.get("Key") == full:
                    found.append((str(item["VersionId"]), bool(item.get("IsLatest"))))
            next_key = response.get("NextKeyMarker")
            if not response.get("IsTruncated") or next_key is None or next_key > full:
                return found
            kwargs["KeyMarker"] = next_key
            kwargs["VersionIdMarker"] = response.get("NextVersionIdMarker")

    def _delete_versions_of(self, keys: Sequence[str]) -> None:
        """Delete every version of ``keys``: older versions first, the current ones last.

        A key with a refused (locked) version keeps its current version, so it reads as
        before; the first such key is raised as ``ObjectLockedError``.
        """
        older: builtins.list[tuple[str, str]] = []
        latest: builtins.list[tuple[str, str]] = []
        for key in keys:
            full = self._full(key)

            def versions_of(full: str = full) -> builtins.list[tuple[str, bool]]:
                return self._versions(full)

            versions = self._call("list versions", key, versions_of)
            for version_id, is_latest in versions:
                (latest if is_latest else older).append((key, version_id))
        refused = self._delete_batch(older)
        refused.update(self._delete_batch([(k, v) for k, v in latest if k not in refused]))
        if refused:
            first = min(refused)
            raise self._locked(first, refused[first], others=len(refused) - 1)

    def _delete_batch(
        self, versions: builtins.list[tuple[str, str]]
    ) -> dict[str, builtins.list[str]]:
        """DeleteObjects by version; {key: version ids} of the versions S3 refused (403).

        Some servers (moto) leave the version out of an error: then every version of
        that key in the batch is a candidate, and ``_locked`` finds the locked one.
        """
        refused: dict[str, builtins.list[str]] = {}
        for start in range(0, len(versions), DELETE_BATCH):
            batch = versions[start : start + DELETE_BATCH]
            by_full: dict[str, tuple[str, builtins.list[str]]] = {}
            for key, version_id in batch:
                by_full.setdefault(self._full(key), (key, []))[1].append(version_id)

            def delete_batch(batch: builtins.list[tuple[str, str]] = batch) -> Any:
                objects: Any = [{"Key": self._full(k), "VersionId": v} for k, v in batch]
                return self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                )

            response = self._call(f"delete of {len(batch)} object versions", None, delete_batch)
            others = []
            for error in response.get("Errors") or []:
                entry = by_full.get(str(error.get("Key")))
                if entry is not None and error.get("Code") == "AccessDenied":
                    key, candidates = entry
                    version_id = error.get("VersionId")
                    refused.setdefault(key, []).extend(
                        [str(version_id)] if version_id else candidates
                    )
                else:
                    others.append(error)
            if others:
                shown = ", ".join(
                    f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip()
                    for e in others[:5]
                )
                raise StorageError(
                    redact(f"{self._where(None)}: {len(others)} objects not deleted: {shown}")
                )
        return refused

    def _locked(
        self, key: str, version_ids: builtins.list[str], *, others: int = 0
    ) -> StorageError:
        """The error for a refused version delete: its lock if it has one, else a 403."""
        for version_id in version_ids:
            info = self._head(key, version_id)
            if info is not None and (info.legal_hold or info.retain_until is not None):
                return ObjectLockedError(
                    key,
                    info.retain_until,
                    info.lock_mode,
                    location=self.location,
                    legal_hold=info.legal_hold,
                    others=others,
                )
        return StorageError(
            f"{self._where(key)}: delete of {key} (version {', '.join(version_ids)}) "
            "failed: AccessDenied",
            hint="the endpoint refused the request: check the access keys and bucket policy "
            "(s3:DeleteObjectVersion, s3:ListBucketVersions)",
        )

    # -- reads -------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        full = self._full(key)

        def fetch() -> bytes:
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if _code(exc) == "NoSuchKey":
                    raise self._not_found(key) from exc
                raise
            with response["Body"] as body:
                return body.read()

        return self._call("get", key, fetch)

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise StorageError(f"invalid range offset={offset} length={length} for {key}")
        if length == 0:
            if self.head(key) is None:
                raise self._not_found(key)
            return b""
        full = self._full(key)

        def fetch() -> bytes:
            try:
                response = self._client.get_object(
                    Bucket=self.bucket, Key=full, Range=f"bytes={offset}-{offset + length - 1}"
                )
            except ClientError as exc:
                if _code(exc) == "NoSuchKey":
                    raise self._not_found(key) from exc
                if _code(exc) == "InvalidRange" or _status(exc) == 416:
                    return b""  # the object exists and ends before offset
                raise
            with response["Body"] as body:
                return body.read()

        return self._call("ranged get", key, fetch)

    def head(self, key: str) -> ObjectInfo | None:
        return self._head(key, None)

    def _head(self, key: str, version_id: str | None) -> ObjectInfo | None:
        full = self._full(key)
        version: dict[str, Any] = {"VersionId": version_id} if version_id else {}

        def fetch() -> ObjectInfo | None:
            try:
                response = self._client.head_object(Bucket=self.bucket, Key=full, **version)
            except ClientError as exc:
                if _status(exc) == 404:  # HEAD has no body: no code to tell key from bucket
                    return None
                if version_id and _status(exc) == 405:  # that version is a delete marker
                    return None
                raise
            mode = response.get("ObjectLockMode")
            lock_mode: LockMode | None = None
            if mode == "COMPLIANCE":
                lock_mode = "compliance"
            elif mode == "GOVERNANCE":
                lock_mode = "governance"
            return ObjectInfo(
                key,
                response["ContentLength"],
                response.get("LastModified"),
                response.get("ETag", "").strip('"') or None,
                lock_mode,
                response.get("ObjectLockRetainUntilDate"),
                response.get("ObjectLockLegalHoldStatus") == "ON",
                response.get("VersionId"),
            )

        return self._call("head", key, fetch)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Page through ``list_objects_v2`` (1000 keys a page), each page retried alone.

        Keys that are not valid object keys (folder markers ending in ``/`` made by
        other tools) are skipped.
        """
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._prefix + prefix}
            if token is not None:
                kwargs["ContinuationToken"] = token

            def page(kwargs: dict[str, Any] = kwargs) -> Any:
                return self._client.list_objects_v2(**kwargs)

            response = self._call("list", None, page)
            for item in response.get("Contents", []):
                key = item["Key"][len(self._prefix) :]
                try:
                    check_key(key)
                except StorageError:
                    continue
                etag = item.get("ETag", "").strip('"') or None
                yield ObjectInfo(key, item["Size"], item.get("LastModified"), etag)
            if not response.get("IsTruncated"):
                return
            token = response["NextContinuationToken"]

    # -- immutability ------------------------------------------------------------------

    def bucket_lock_status(self) -> BucketLockStatus:
        """Versioning and Object Lock configuration (needs s3:GetBucketVersioning and
        s3:GetBucketObjectLockConfiguration)."""
        versioning = self._call(
            "get versioning", None, lambda: self._client.get_bucket_versioning(Bucket=self.bucket)
        )

        def fetch() -> dict[str, Any]:
            try:
                response = self._client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) == "ObjectLockConfigurationNotFoundError":
                    return {}
                raise
            return dict(response.get("ObjectLockConfiguration") or {})

        config = self._call("get object lock configuration", None, fetch)
        enabled = config.get("ObjectLockEnabled") == "Enabled"
        self._object_lock = enabled
        default = (config.get("Rule") or {}).get("DefaultRetention") or {}
        mode = str(default.get("Mode", "")).lower() or None
        days = default.get("Days")
        if days is None and default.get("Years") is not None:
            days = 365 * int(default["Years"])
        return BucketLockStatus(
            self.bucket,
            versioning.get("Status") == "Enabled",
            enabled,
            "compliance" if mode == "compliance" else "governance" if mode else None,
            int(days) if days is not None else None,
        )

    def set_retention(self, key: str, retain_until: datetime, mode: LockMode) -> bool:
        """PutObjectRetention on the current version; only ever extends (see base)."""
        check_lock_args(self._where(key), retain_until, mode)
        info = self.head(key)
        if info is None:
            raise self._not_found(key)
        now = datetime.now(UTC)
        active = info.retain_until is not None and info.retain_until > now
        if active and info.retain_until is not None and info.retain_until >= retain_until:
            return False
        if active and info.lock_mode is not None:
            mode = info.lock_mode
        full = self._full(key)
        version: dict[str, Any] = {"VersionId": info.version_id} if info.version_id else {}
        retention: Any = {"Mode": mode.upper(), "RetainUntilDate": retain_until}

        def put_retention() -> None:
            self._client.put_object_retention(
                Bucket=self.bucket, Key=full, Retention=retention, **version
            )

        self._call("put retention", key, put_retention)
        return True

    # -- lifecycle ---------------------------------------------------------------------

    def _rule_id(self, transition: LifecycleTransition) -> str:
        return (
            f"{LIFECYCLE_ID_PREFIX}{self._prefix}{transition.prefix} "
            f"{transition.days}d {transition.storage_class}"
        )[:255]

    def _owns(self, rule: Any) -> bool:
        prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
        return str(rule.get("ID", "")).startswith(LIFECYCLE_ID_PREFIX) and str(prefix).startswith(
            self._prefix
        )

    def _rules(self) -> builtins.list[Any]:
        def fetch() -> builtins.list[Any]:
            try:
                response = self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) == "NoSuchLifecycleConfiguration":
                    return []
                raise
            return builtins.list(response.get("Rules", []))

        return self._call("get lifecycle", None, fetch)

    def set_lifecycle(self, transitions: Sequence[LifecycleTransition]) -> None:
        """Replace drd's transition rules for this prefix; other rules in the bucket stay."""
        rules = [rule for rule in self._rules() if not self._owns(rule)]
        seen: set[str] = set()
        for transition in transitions:
            rule_id = self._rule_id(transition)
            if rule_id in seen:
                continue
            seen.add(rule_id)
            rules.append(
                {
                    "ID": rule_id,
                    "Status": "Enabled",
                    "Filter": {"Prefix": self._prefix + transition.prefix},
                    "Transitions": [
                        {"Days": transition.days, "StorageClass": transition.storage_class}
                    ],
                }
            )
        if rules:
            self._call(
                "set lifecycle",
                None,
                lambda: self._client.put_bucket_lifecycle_configuration(
                    Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
                ),
            )
        else:
            self._call(
                "delete lifecycle",
                None,
                lambda: self._client.delete_bucket_lifecycle(Bucket=self.bucket),
            )

    def get_lifecycle(self) -> builtins.list[LifecycleTransition]:
        """drd's transition rules for this prefix, sorted by prefix, days, class."""
        found: builtins.list[LifecycleTransition] = []
        for rule in self._rules():
            if not self._owns(rule) or rule.get("Status") != "Enabled":
                continue
            prefix = str((rule.get("Filter") or {}).get("Prefix", ""))[len(self._prefix) :]
            for item in rule.get("Transitions", []):
                if "Days" in item:
                    found.append(LifecycleTransition(prefix, item["Days"], item["StorageClass"]))
        return sorted(found, key=lambda t: (t.prefix, t.days, t.storage_class))

    def close(self) -> None:
        self._client.close()
