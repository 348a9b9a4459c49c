"""Readers for other recorders' files, one module per format, all of one shape.

Each module has ``NAME``; ``sniff(first_line) -> bool`` (does the first non-blank
line look like this format); ``detect(lines, path) -> Detected`` (the venue, from
the first lines); and ``read(path, venue, skipped, meter=None) -> Iterator[Frame]``
(every frame in file order, with problems counted in ``skipped`` by kind).
:data:`FORMATS` lists them in the order the converter sniffs.
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict

from sources.capture.inputs import cryptofeed_v1, cryptofeed_v2, hftbacktest, ssc2ce

#: Sniffing order: ssc2ce ("any JSON per line") must come last.
FORMATS: Dict[str, ModuleType] = {m.NAME: m for m in (cryptofeed_v2, cryptofeed_v1,
                                                       hftbacktest, ssc2ce)}
