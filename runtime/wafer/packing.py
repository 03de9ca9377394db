"""Packing regions onto wafers: rectangles in tile rows, or serpentine strips that may wrap a band's end.

The wafer is cut into bands `rows` PEs high; regions (a layer, or the embedding / head as k layer-sized tiles) take
consecutive runs of columns along the bands, odd bands right to left so neighbours in flow order are neighbours on
the mesh. Two modes:
    rectangles  every region sits whole inside one band of tx = W // cols tiles: what does not fit the rest of a
                band starts the next one, and W mod cols columns of every band stay idle.
    strips      a band is all W columns, and a region that does not fit its rest continues at the same edge of the
                next band (serpentine: the two pieces touch there), so only a wafer's last band wastes columns.
                A wrapped region is still a logical rows x cols grid; its x-lines fold round the band end, which
                costs `rows` more hops on every collective or shift that crosses it (cost.fold_penalty).
A region never spans wafers: only the hidden state crosses between them.
"""

from __future__ import annotations


def pack(widths: list[int], mesh_width: int, mesh_height: int, rows: int, cols: int,
         wrap: bool) -> list[tuple[int, int, int, int]] | None:
    """(wafer, x, y, wrap_cols) per region of `widths` columns, in flow order; None if a region fits no band.
    x, y: the top-left corner of the region's first piece; wrap_cols: columns continued in the next band."""
    bands = mesh_height // rows
    band_w = mesh_width if wrap else (mesh_width // cols) * cols
    if bands <= 0 or band_w <= 0:
        return None
    out = []
    wafer = band = pos = 0

    def next_band():
        nonlocal wafer, band, pos
        band, pos = band + 1, 0
        if band >= bands:
            wafer, band = wafer + 1, 0

    for u in widths:
        if u > band_w:
            return None
        if pos >= band_w:
            next_band()
        if pos + u > band_w:
            if wrap and band + 1 < bands:  # continue at the same edge of the next band, on this wafer
                first = band_w - pos
                x = pos if band % 2 == 0 else 0
                out.append((wafer, x, band * rows, u - first))
                band, pos = band + 1, u - first
                continue
            next_band()
        x = pos if band % 2 == 0 else band_w - pos - u
        out.append((wafer, x, band * rows, 0))
        pos += u
    return out
