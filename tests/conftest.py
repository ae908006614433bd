"""Test ordering for ``pytest -n 2 --dist loadfile``: files that take minutes start first, so the two workers
finish together instead of one of them running the longest file alone at the end."""
from __future__ import annotations

import os

# Files of the suite whose tests take the longest (measured with --durations), longest first.
_LONG = ("test_readme.py", "test_ablation.py", "test_faults.py", "test_multiprocess.py", "test_train.py",
         "test_readme_own_data.py", "test_one_map.py", "test_tools.py", "test_notebooks.py", "test_configs.py",
         "test_formats_train.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return _LONG.index(name) if name in _LONG else len(_LONG)

    items.sort(key=rank)  # stable: the order within a file is kept
