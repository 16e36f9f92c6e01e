import ast
import subprocess
import sys
from pathlib import Path

import medembed.synth as synth_pkg
from medembed.synth.backends import BUILTIN, backend_class, registered_backends

SYNTH = Path(synth_pkg.__file__).parent


def test_builtin_backends_import_the_base_not_the_registry():
    for module in BUILTIN.values():
        tree = ast.parse((SYNTH / (module.rsplit(".", 1)[1] + ".py")).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "medembed.synth.backends" not in imported, module


def test_registry_imports_a_backend_only_when_asked():
    code = ("import sys; import medembed.synth.backends as b; assert 'medembed.synth.extractive' not in sys.modules; "
            "b.backend_class('extractive'); assert 'medembed.synth.extractive' in sys.modules; "
            "assert 'medembed.synth.openai_backend' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_names():
    assert registered_backends() == ["extractive", "openai", "vllm"]
    assert backend_class("openai").generator == "openai"
