"""The Python API (`automtl.api`): its docstring examples run as doctests, only in a temporary
folder; `import automtl` stays light; `automtl.search/export/train(...)` stay callable although
they share their names with subpackages; bad input is one `AutomtlError` before any side effect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import automtl
from automtl.errors import AutomtlError

_DOCTEST = """
import doctest, json, sys
import automtl.api as api
r = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
print("DOCTEST " + json.dumps([r.failed, r.attempted]))
"""


@pytest.mark.timeout(900)
def test_docstring_examples_run_and_write_only_to_a_temp_dir(tmp_path: Path) -> None:
    cwd, home, tmp = tmp_path / "cwd", tmp_path / "home", tmp_path / "tmp"
    for d in (cwd, home, tmp):
        d.mkdir()
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "AUTOMTL_STORAGE": "",
           "PYTHONPATH": os.pathsep.join([str(Path(automtl.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _DOCTEST], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=880)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("DOCTEST ")]
    assert line, proc.stdout[-3000:]
    failed, attempted = json.loads(line[-1].split(" ", 1)[1])
    assert failed == 0, proc.stdout[-5000:]
    assert attempted >= 40  # every example of the module and of the four functions ran
    # the examples create their files under tempfile.mkdtemp() and remove them (torch itself
    # may leave its compile cache folder, torchinductor_<user>, in the temp dir)
    assert list(cwd.iterdir()) == []
    assert [p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor_")] == []
    assert not (home / ".cache" / "automtl").exists()


def test_import_automtl_loads_neither_torch_nor_optuna() -> None:
    code = ("import sys, automtl; print(sorted(m for m in ('torch', 'optuna', 'sklearn') "
            "if m in sys.modules)); automtl.load_front; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["[]", "False"]


def test_api_names_are_the_functions_even_after_subpackage_imports() -> None:
    import automtl.api as api
    import automtl.export.trial  # noqa: F401  (binds automtl.export to the subpackage)
    import automtl.search.store  # noqa: F401
    import automtl.train.loop  # noqa: F401

    for name in ("search", "export", "train"):
        obj = getattr(automtl, name)
        assert callable(obj) and obj.__call__.__doc__ == getattr(api, name).__doc__
    assert automtl.load_front is api.load_front
    from automtl import export, search, train  # the from-import form works the same

    assert callable(search) and callable(export) and callable(train)
    import inspect

    assert list(inspect.signature(automtl.search).parameters)[:2] == ["dataset", "study_config"]


def test_bad_input_is_one_error_before_any_database(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    url = f"sqlite:///{db}"
    with pytest.raises(AutomtlError, match="give dataset or study_config, not both"):
        automtl.search("synthetic", study_config="synthetic", storage=url)
    with pytest.raises(AutomtlError, match="must not be empty"):
        automtl.search("synthetic", study_name=" ", storage=url)
    with pytest.raises(AutomtlError, match="n_trials"):
        automtl.search("synthetic", n_trials=0, storage=url)
    with pytest.raises(AutomtlError, match="no_such_field"):
        automtl.search("synthetic", overrides={"no_such_field": 1}, storage=url)
    with pytest.raises(AutomtlError, match="choose a trial"):
        automtl.export("demo", "yaml", tmp_path / "x.yaml", storage=url)
    with pytest.raises(AutomtlError, match="n_experts"):
        automtl.train({"model": {"arch": "mmoe", "n_experts": "four"}})
    assert not db.exists()
    assert list(tmp_path.iterdir()) == []
