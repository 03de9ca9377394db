"""Code completion on the runtime's decoder, in the order a request flows:

request.py      CompletionRequest in, CompletionResult out (plain strings, no LSP)
cache.py        repeated requests and typing along a shown suggestion answered without the model
prompt.py       the prompt plan: window, header and context, FIM layout, back-off to a natural token boundary
(runtime.engine.generate decodes, the backed-off text as forced prefix: token healing)
postprocess.py  the raw continuation cut to what is shown at the cursor
service.py      CompletionService: the above in order, plus KV slots per document and background prefill
"""

from runtime.complete.request import CompletionRequest, CompletionResult
from runtime.complete.service import CompletionService

__all__ = ["CompletionRequest", "CompletionResult", "CompletionService"]
