"""The import rules the layout promises, checked on the source (every import, even inside
functions), so a change that breaks one fails here rather than in a reader's head.

- ``worker.core`` imports nothing from the paths or the surfaces;
- the write path (``worker.publish``) never imports the read path or a surface;
- the read path (``worker.read``) never imports the write path, the monitor, Celery, kombu
  or FastAPI;
- the monitor (``worker.observe``) never imports the write path, Celery, kombu or FastAPI;
- the probe path (``petsage-heartbeat check``/``status``) imports no Celery, kombu, FastAPI
  or redis-py at run time;
- no module imports from a test file (tests share code through ``tests/support`` only);
- every Lua script is loaded by a module beside it, one way (``redis_io.lua_script``), and
  no Python module holds Lua source of its own (a script inline in a string is one that the
  packaging test, the Lua mutation list and a reader of the ``.lua`` files all miss).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.support.helpers import REPO
from tests.support.processes import run as run_process

PACKAGE = REPO / "worker"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _offences(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(REPO)} imports {name}"
            for path in _modules(PACKAGE / folder) for name in sorted(_imports(path))
            if any(name == f or name.startswith(f + ".") for f in forbidden)]


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("core", ("worker.publish", "worker.read", "worker.cli", "worker.http", "worker.celery",
              "celery", "kombu", "fastapi")),
    ("publish", ("worker.read", "worker.cli", "worker.http")),
    ("read", ("worker.publish", "worker.observe", "worker.cli", "worker.http",
              "worker.celery", "celery", "kombu", "fastapi")),
    ("observe", ("worker.publish", "worker.cli", "worker.http", "worker.celery", "celery",
                 "kombu", "fastapi")),
])
def test_each_folder_imports_only_what_its_place_allows(folder: str,
                                                         forbidden: tuple[str, ...]) -> None:
    assert _offences(folder, forbidden) == []


def test_the_layout_is_the_documented_one() -> None:
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert folders == ["cli", "core", "http", "observe", "publish", "read"]
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "celery.py"]
    architecture = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    for path in _modules(PACKAGE):
        if path.name != "__init__.py":
            assert f"`{path.relative_to(REPO).as_posix()}`" in architecture, path


def test_no_module_imports_from_a_test_file() -> None:
    offences = [f"{path.relative_to(REPO)} imports {name}"
                for folder in ("worker", "tests", "bench")
                for path in (REPO / folder).rglob("*.py")
                for name in _imports(path)
                if name.startswith("tests.") and not name.startswith(("tests.support",
                                                                      "tests.plugins"))]
    assert offences == []


def test_every_lua_script_is_loaded_beside_it_one_way() -> None:
    for script in PACKAGE.rglob("*.lua"):
        loaders = [path for path in script.parent.glob("*.py")
                   if f'lua_script(__package__, "{script.name}")'
                   in path.read_text(encoding="utf-8")]
        assert len(loaders) == 1, script
    readers = [path for path in PACKAGE.rglob("*.py")
               if "resources.files" in path.read_text(encoding="utf-8")]
    assert [p.name for p in readers] == ["redis_io.py"]


def test_no_python_module_holds_lua_source() -> None:
    offences = [str(path.relative_to(REPO)) for path in PACKAGE.rglob("*.py")
                if "redis.call" in path.read_text(encoding="utf-8")
                or "redis.pcall" in path.read_text(encoding="utf-8")]
    assert offences == []


@pytest.mark.parametrize("command", ["check", "status"])
def test_the_probe_path_imports_no_celery_kombu_fastapi_or_redis_py(command: str) -> None:
    code = ("import sys\n"
            "from worker.cli import main\n"
            f"try:\n    main(['{command}', '--redis', 'redis://127.0.0.1:1/0', "
            "'--timeout', '0.2'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'celery', 'kombu', 'fastapi', 'redis', 'pydantic', 'starlette'})\n"
            "print('heavy=' + ','.join(heavy))\n")
    done = run_process([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False, cwd=REPO)
    assert done.stdout.splitlines()[-1] == "heavy=", done.stdout + done.stderr


def test_every_package_and_script_is_installed() -> None:
    """``pip install .`` ships what the checkout has: every package, every Lua script."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    setuptools = config["setuptools"]
    packages = sorted(".".join(p.relative_to(REPO).parts[:-1])
                      for p in PACKAGE.rglob("__init__.py"))
    assert sorted(setuptools["packages"]) == packages
    with_lua = sorted({".".join(p.relative_to(REPO).parts[:-1]) for p in PACKAGE.rglob("*.lua")})
    assert all("*.lua" in setuptools["package-data"].get(p, []) for p in with_lua), with_lua
