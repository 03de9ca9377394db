"""Assembly: a WaferlineServer with every handler of lsp_server.features registered.

The modules import one way only (protocol <- language_server <- features <- server), so nothing here is imported
back by what it assembles; tests/test_import_graph.py keeps it so.
"""

from __future__ import annotations

from lsp_server import features
from lsp_server.language_server import WaferlineServer, configure_log_level

__all__ = ["WaferlineServer", "configure_log_level", "create_server"]


def create_server() -> WaferlineServer:
    """A fresh server with every feature registered."""
    server = WaferlineServer()
    features.register(server)
    return server
