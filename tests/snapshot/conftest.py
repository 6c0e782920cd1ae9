"""Snapshot fixtures: a fresh repository on a MemoryStore."""

from __future__ import annotations

import pytest

from drd.snapshot.repository import Repository
from drd.testing.filestore import new_repository


@pytest.fixture
def repo() -> Repository:
    return new_repository()
