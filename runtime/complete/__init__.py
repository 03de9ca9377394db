"""Code completion on the runtime's decoder or a remote server, in the order a request flows:

request.py      CompletionRequest in, CompletionResult out (plain strings, no LSP)
flow.py         skip rules, then the result cache, then the model: the same for every backend
cache.py        repeated requests and typing along a shown suggestion answered without the model
prompt.py       the prompt plan: window, header and context, FIM layout, back-off to a natural token boundary
(runtime.engine.generate decodes, the backed-off text as forced prefix: token healing)
postprocess.py  the raw continuation cut to what is shown at the cursor
service.py      CompletionService: the above in order, plus KV slots per document and background prefill
remote.py       RemoteCompletionService: the same flow, the text streamed from a remote server (runtime.remote)
"""

from runtime.complete.remote import RemoteCompletionService
from runtime.complete.request import CompletionRequest, CompletionResult
from runtime.complete.service import CompletionService

__all__ = ["CompletionRequest", "CompletionResult", "CompletionService", "RemoteCompletionService"]
