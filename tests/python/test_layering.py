"""The include layering check itself: it must flag an include that reaches up a layer (and
io from below train), name file and line, and pass a tree that respects the layers."""
import os
import subprocess
import sys


def _check(root, repo):
    return subprocess.run([sys.executable, os.path.join(repo, "scripts", "check_layers.py"), str(root)],
                          capture_output=True, text=True, timeout=60)


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_flags_upward_includes_and_passes_clean_tree(tmp_path, repo):
    _write(tmp_path, "include/eqprop/core/a.hpp", "#pragma once\n")
    _write(tmp_path, "include/eqprop/model/net.hpp", '#include "eqprop/core/a.hpp"\n')
    _write(tmp_path, "src/train/t.cpp", '#include "eqprop/io/dataset.hpp"\n#include "eqprop/model/net.hpp"\n')
    ok = _check(tmp_path, repo)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    _write(tmp_path, "include/eqprop/model/bad.hpp", '#pragma once\n#include "eqprop/learn/estimator.hpp"\n')
    _write(tmp_path, "src/learn/bad.cpp", '// reads data\n#include "eqprop/io/dataset.hpp"\n')
    bad = _check(tmp_path, repo)
    assert bad.returncode == 1
    out = bad.stdout + bad.stderr
    assert "include/eqprop/model/bad.hpp:2" in out
    assert "src/learn/bad.cpp:2" in out
    assert "net.hpp" not in out and "t.cpp" not in out
