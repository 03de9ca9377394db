"""Shared fixtures: tiny generated models (session-scoped: converting is cheap, but not free)."""

from __future__ import annotations

import os
import tempfile

import pytest

from runtime.tiny import make_tiny_bundle, write_tiny_gguf


# the served models' acceptance tallies (runtime/acceptance.py) are the user's measurements: tests and the servers
# they start write theirs elsewhere (inherited by subprocesses through the environment)
os.environ.setdefault("WAFERLINE_ACCEPTANCE_DIR", tempfile.mkdtemp(prefix="waferline-acceptance-"))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A converted random tiny llama (Q4_1, like the default model) for engine, server and client tests."""
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny-bundle") / "bundle")


@pytest.fixture(scope="session")
def default_bundle():
    """The real default model (Qwen2.5-Coder-0.5B), pulled once into the user cache (`make test` pulls it first)."""
    from runtime.models import pull

    return pull(progress=False)


@pytest.fixture(scope="session")
def smollm2_bundle():
    """SmolLM2-135M, the small real model the exact-layout checks run on (`make test` pulls it too)."""
    from runtime.models import pull

    return pull("smollm2-135m", progress=False)
