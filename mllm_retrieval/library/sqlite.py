"""sqlite-utils, imported without pandas: it imports pandas whenever it is installed (ray's extras bring it),
which cost every `mllmret` start 0.5-1.5 s here, only to map `pandas.Timestamp` columns this project never
inserts. pandas stays importable by whoever needs it later."""

from __future__ import annotations

import sys

if "sqlite_utils.db" not in sys.modules and "pandas" not in sys.modules:
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` raises ImportError meanwhile
    try:
        import sqlite_utils.db  # noqa: F401
    finally:
        del sys.modules["pandas"]

from sqlite_utils import Database  # noqa: E402
from sqlite_utils.migrations import Migrations  # noqa: E402

__all__ = ["Database", "Migrations"]
