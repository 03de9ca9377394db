"""One rule for the names in the prompt header (runtime.header): what the runtime writes, and what the server cuts
to fit a small model, are the same cut."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lsp_server.fit import fit_request
from runtime.complete import CompletionRequest, CompletionService
from runtime.header import CUT_MARK, HEADER_NAME_CHARS, header_path, header_repo

LONG_PATH = "/".join(f"dir{i:03d}" for i in range(120)) + "/module.py"  # 730 characters
LONG_REPO = "r" * 150 + "-and-the-rest-of-a-very-long-workspace-folder-name"


def test_header_path_keeps_the_tail():
    assert header_path("pkg/mod.py") == "pkg/mod.py"
    cut = header_path(LONG_PATH)
    assert cut == CUT_MARK + LONG_PATH[-HEADER_NAME_CHARS:] and cut.endswith("/module.py")
    assert header_path(cut) == cut  # cutting twice changes nothing
    assert header_path(LONG_PATH, 20) == CUT_MARK + "118/dir119/module.py"


def test_header_repo_keeps_the_head():
    assert header_repo(None) == "repo" and header_repo("") == "repo" and header_repo("proj") == "proj"
    assert header_repo(LONG_REPO) == LONG_REPO[:HEADER_NAME_CHARS]


@pytest.fixture(scope="module")
def service(tiny_bundle):
    """The tiny bundle's tokenizer and meta (it has <repo_name> and <file_sep>); no decoder is needed for a plan."""
    from runtime.bundle import load_bundle

    svc = CompletionService(load_bundle(tiny_bundle), SimpleNamespace(max_context=4096, tokens=[]))
    assert svc.meta.repo_name_id is not None and svc.meta.file_sep_id is not None
    return svc


def header_text(svc: CompletionService, req: CompletionRequest) -> str:
    """The header of `req`'s prompt as text: what stands between <repo_name> and the code."""
    ids = svc.plan_prompt(req).ids
    assert ids[0] == svc.meta.repo_name_id
    return svc.tokenizer.decode(ids[1:], skip_special_tokens=False).split("<file_sep>", 1)


def test_the_runtime_header_shows_the_names_runtime_header_cuts(service):
    req = CompletionRequest(prefix="import os\n", path=LONG_PATH, repo_name=LONG_REPO)
    repo, rest = header_text(service, req)
    assert repo.rstrip("\n") == header_repo(LONG_REPO)
    assert rest.startswith(header_path(LONG_PATH) + "\n")


def test_the_server_cut_is_the_runtime_cut(service):
    """fit_request's names are the runtime's: the prompt is the same with or without the server's cut."""
    req = CompletionRequest(prefix="import os\n", path=LONG_PATH, repo_name=LONG_REPO)
    fitted = fit_request(service, req)
    assert (fitted.repo_name, fitted.path) == (header_repo(LONG_REPO), header_path(LONG_PATH))
    assert service.plan_prompt(fitted).ids == service.plan_prompt(req).ids


def test_a_small_context_halves_the_path_tail_then_drops_it(service):
    small = SimpleNamespace(max_context=512, count_tokens=service.count_tokens)
    fitted = fit_request(small, CompletionRequest(prefix="x", path=LONG_PATH, repo_name="proj"))
    assert fitted.path is not None and fitted.path.startswith(CUT_MARK) and LONG_PATH.endswith(fitted.path[len(CUT_MARK) :])
    assert len(service.encode(f"proj{fitted.path}\n")) + 2 <= 512 // 8 < len(service.encode(f"proj{LONG_PATH}\n"))
    tiny = SimpleNamespace(max_context=8, count_tokens=service.count_tokens)  # a budget of 4 tokens: no path fits
    assert fit_request(tiny, CompletionRequest(prefix="x", path=LONG_PATH, repo_name="proj")).path is None
