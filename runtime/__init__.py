"""waferline runtime: GGUF -> ONNX conversion, the ONNX Runtime decoder, completion, and the wafer simulator.

Knows nothing of LSP: `lsp_server` calls in, never the other way round.
"""
