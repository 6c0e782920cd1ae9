"""S3Store without a server: retries through RetryPolicy, error mapping, batching, paging."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from drd.errors import StorageError
from drd.retry import RetryPolicy
from drd.storage import ObjectNotFoundError
from drd.storage.s3 import S3Store, is_retryable
from drd.testing import free_port


def client_error(status: int, code: str, operation: str = "PutObject") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} says no"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


class FakeClient:
    """Plays back scripted outcomes per operation: an exception is raised, a value returned."""

    def __init__(self, **script: list[Any]) -> None:
        self.script = script
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        if operation not in self.script:
            raise AttributeError(operation)

        def call(**kwargs: Any) -> Any:
            self.calls.append((operation, kwargs))
            outcome = self.script[operation].pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return call

    def close(self) -> None:
        pass


def make_store(client: FakeClient, slept: list[float] | None = None) -> S3Store:
    policy = RetryPolicy(
        attempts=5,
        deadline=600,
        retryable=is_retryable,
        sleep=(slept if slept is not None else []).append,
    )
    return S3Store("bkt", "pre/fix", retry=policy, client=client)  # type: ignore[arg-type]


def test_503_is_retried_until_success() -> None:
    """Two 503 SlowDown answers are retried with backoff; the third attempt succeeds."""
    client = FakeClient(put_object=[client_error(503, "SlowDown")] * 2 + [{}])
    slept: list[float] = []
    make_store(client, slept).put("a/b", b"data")
    assert len(client.calls) == 3
    assert len(slept) == 2
    kwargs = client.calls[-1][1]
    assert (kwargs["Bucket"], kwargs["Key"], kwargs["Body"]) == ("bkt", "pre/fix/a/b", b"data")
    assert "ContentMD5" in kwargs


def test_403_is_not_retried_and_names_bucket_key_code() -> None:
    """A 403 fails at once with a StorageError naming s3://bucket/key, the code and a hint."""
    client = FakeClient(put_object=[client_error(403, "AccessDenied")])
    slept: list[float] = []
    with pytest.raises(StorageError) as info:
        make_store(client, slept).put("a/b", b"data")
    assert len(client.calls) == 1
    assert slept == []
    assert "s3://bkt/pre/fix/a/b: put failed: AccessDenied (HTTP 403)" in str(info.value)
    assert "access keys" in (info.value.hint or "")
    assert isinstance(info.value.__cause__, ClientError)


def test_retries_give_up_after_the_budget() -> None:
    """Persistent 500s stop after the policy's attempts and surface the last error."""
    client = FakeClient(get_object=[client_error(500, "InternalError", "GetObject")] * 5)
    with pytest.raises(StorageError, match="InternalError"):
        make_store(client).get("k")
    assert len(client.calls) == 5


def test_connection_errors_and_timeouts_are_retried() -> None:
    """A refused connection and a read timeout are retried; the next attempt succeeds."""
    client = FakeClient(
        delete_object=[
            EndpointConnectionError(endpoint_url="https://s3.example"),
            ReadTimeoutError(endpoint_url="https://s3.example"),
            {},
        ]
    )
    make_store(client).delete("k")
    assert len(client.calls) == 3


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (client_error(503, "SlowDown"), True),
        (client_error(500, "InternalError"), True),
        (client_error(400, "RequestTimeout"), True),
        (client_error(429, "TooManyRequests"), True),
        (client_error(409, "ConditionalRequestConflict"), True),
        (client_error(403, "AccessDenied"), False),
        (client_error(404, "NoSuchKey"), False),
        (client_error(412, "PreconditionFailed"), False),
        (client_error(400, "InvalidRequest"), False),
        (EndpointConnectionError(endpoint_url="https://x"), True),
        (IncompleteReadError(actual_bytes=1, expected_bytes=2), True),
        (SSLError(endpoint_url="https://x", error="certificate verify failed"), False),
        (NoCredentialsError(), False),
        (ValueError("bug"), False),
    ],
)
def test_retryable_classification(exc: BaseException, retryable: bool) -> None:
    """Only 5xx, throttling, timeouts and dropped connections are worth another try."""
    assert is_retryable(exc) is retryable


def test_missing_key_is_not_found_without_retry() -> None:
    """NoSuchKey becomes ObjectNotFoundError naming the key; head of a 404 is None."""
    client = FakeClient(
        get_object=[client_error(404, "NoSuchKey", "GetObject")],
        head_object=[client_error(404, "404", "HeadObject")],
    )
    store = make_store(client)
    with pytest.raises(ObjectNotFoundError, match="s3://bkt/pre/fix/gone"):
        store.get("gone")
    assert store.head("gone") is None
    assert len(client.calls) == 2


def test_put_if_absent_412_and_lost_answer() -> None:
    """412 means taken; after a retried attempt, a 412 on our own bytes means we won."""
    data = b"owner-1"
    etag = f'"{hashlib.md5(data).hexdigest()}"'  # noqa: S324 - S3's ETag of a plain PUT
    taken = FakeClient(put_object=[client_error(412, "PreconditionFailed")])
    assert make_store(taken).put_if_absent("lock", data) is False
    assert taken.calls[0][1]["IfNoneMatch"] == "*"

    lost = FakeClient(
        put_object=[client_error(503, "SlowDown"), client_error(412, "PreconditionFailed")],
        head_object=[{"ContentLength": len(data), "ETag": etag}],
    )
    assert make_store(lost).put_if_absent("lock", data) is True

    other = FakeClient(
        put_object=[client_error(503, "SlowDown"), client_error(412, "PreconditionFailed")],
        head_object=[{"ContentLength": 7, "ETag": '"0123456789abcdef0123456789abcdef"'}],
    )
    assert make_store(other).put_if_absent("lock", data) is False


def test_delete_many_batches_of_1000_and_reports_errors() -> None:
    """2500 keys go out in 3 DeleteObjects calls; per-key errors raise a StorageError."""
    client = FakeClient(delete_objects=[{}, {}, {}])
    make_store(client).delete_many([f"k{i}" for i in range(2500)])
    sizes = [len(kwargs["Delete"]["Objects"]) for _, kwargs in client.calls]
    assert sizes == [1000, 1000, 500]
    assert client.calls[0][1]["Delete"]["Objects"][0] == {"Key": "pre/fix/k0"}

    failing = FakeClient(
        delete_objects=[{"Errors": [{"Key": "pre/fix/k1", "Code": "AccessDenied"}]}]
    )
    with pytest.raises(StorageError, match=r"1 objects not deleted: pre/fix/k1: AccessDenied"):
        make_store(failing).delete_many(["k1"])


def test_list_pages_strip_prefix_and_retry_one_page() -> None:
    """Pages follow the continuation token, a failed page alone is retried, prefix stripped."""
    page1 = {
        "Contents": [
            {"Key": "pre/fix/a", "Size": 1, "ETag": '"e1"'},
            {"Key": "pre/fix/folder/", "Size": 0},  # a folder marker another tool made
        ],
        "IsTruncated": True,
        "NextContinuationToken": "t1",
    }
    page2 = {"Contents": [{"Key": "pre/fix/b", "Size": 2}], "IsTruncated": False}
    client = FakeClient(
        list_objects_v2=[page1, client_error(500, "InternalError", "ListObjectsV2"), page2]
    )
    infos = list(make_store(client).list())
    assert [(i.key, i.size, i.etag) for i in infos] == [("a", 1, "e1"), ("b", 2, None)]
    assert [kwargs.get("ContinuationToken") for _, kwargs in client.calls] == [None, "t1", "t1"]
    assert all(kwargs["Prefix"] == "pre/fix/" for _, kwargs in client.calls)


def test_botocore_does_not_retry_by_itself() -> None:
    """botocore's own retries are off: one attempt reaches the wire per policy attempt."""
    store = S3Store(
        "bkt",
        endpoint_url=f"https://localhost:{free_port()}",  # nothing listens there
        access_key="fake-access-key",
        secret_key="fake-secret-key",
        connect_timeout=2,
        retry=RetryPolicy(attempts=2, retryable=is_retryable, sleep=lambda _: None),
    )
    sent: list[str] = []
    store._client.meta.events.register("before-send.s3", lambda **kw: sent.append("x"))
    try:
        with pytest.raises(StorageError) as info:
            store.head("k")
    finally:
        store.close()
    assert len(sent) == 2
    assert "EndpointConnectionError" in str(info.value)
    assert "cannot reach the storage endpoint" in (info.value.hint or "")
    assert "fake-secret-key" not in str(info.value)
