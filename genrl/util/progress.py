"""Progress bars for every long stage, in one place so they look and switch off alike.

``GENRL_PROGRESS=0`` hides every bar genrl shows, SB3's included; it is read here only.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress_enabled(requested: bool = True) -> bool:
    """Whether to show progress: as requested, unless ``GENRL_PROGRESS=0`` switches it off."""
    return bool(requested) and os.environ.get("GENRL_PROGRESS", "1") != "0"


def progress_bar(total: int, desc: str, unit: str = "it", disable: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; hidden when disabled, or when ``GENRL_PROGRESS=0``."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=not progress_enabled(not disable),
        file=sys.stderr,
        dynamic_ncols=True,
        **kwargs,
    )
