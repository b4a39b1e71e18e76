"""Progress bars for every long stage, in one place so they look and switch off alike."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: int, desc: str, unit: str = "it", disable: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar; hidden when disabled, or when GENRL_PROGRESS=0."""
    hidden = disable or os.environ.get("GENRL_PROGRESS", "1") == "0"
    return tqdm(
        total=total, desc=desc, unit=unit, disable=hidden, file=sys.stderr, dynamic_ncols=True, **kwargs
    )
