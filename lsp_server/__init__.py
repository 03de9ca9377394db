"""waferline's language server: a thin pygls layer over runtime.complete (DESIGN.md, lsp_server/)."""

__version__ = "0.1.0"
