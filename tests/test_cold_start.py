"""What a cold `mllmret search` imports: nothing it does not use."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_opening_a_library_does_not_import_pandas_yet_pandas_still_imports():
    pandas = run("import importlib.util; print(importlib.util.find_spec('pandas') is not None)").strip()
    code = ("import sys; from mllm_retrieval.library.store import Store; import sqlite_utils; "
            "print('pandas' in sys.modules)")
    assert run(code).strip() == "False", "sqlite-utils pulled pandas in (0.5-1.5 s of every start)"
    if pandas == "True":
        assert run("import mllm_retrieval.library.store, pandas; print(pandas.DataFrame({'a': [1]}).shape)"
                   ).strip() == "(1, 1)"


def test_keyword_search_imports_neither_torch_nor_pandas(tmp_path):
    code = ("import sys\n"
            "from mllm_retrieval.library.store import Store\n"
            "from mllm_retrieval.search.searcher import Searcher\n"
            f"with Store({str(tmp_path / 'lib.db')!r}) as s:\n"
            "    Searcher(s, mode='keyword').search('cat')\n"
            "print(sorted(m for m in ('torch', 'pandas', 'transformers') if m in sys.modules))")
    assert run(code).strip() == "[]"
