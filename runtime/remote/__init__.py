"""Remote completion backends: llama.cpp's /infill, OpenAI-compatible /v1/completions (with `suffix` or a raw FIM
prompt), streamed over SSE and cancelled by closing the connection. No LSP here: the completion service calls
`RemoteBackend.stream(parts, cancel)` instead of the local decoder."""

from .backend import DIALECTS, ProbeResult, RemoteBackend, RemoteConfig, RequestStats
from .fim import FIM_TEMPLATES, PromptParts, render_fim, template_for_model
from .transport import RemoteError

__all__ = ["DIALECTS", "FIM_TEMPLATES", "ProbeResult", "PromptParts", "RemoteBackend", "RemoteConfig", "RemoteError",
           "RequestStats", "render_fim", "template_for_model"]
