"""Builds the extension eqprop._core with the project's CMake (see pyproject.toml).

The CMake build directory is build-python/ beside setup.py ($EQPROP_PY_BUILD_DIR; reused by
later builds), which also holds setuptools' build and egg-info directories. With
ccache installed, objects are shared with ./build: both build directories sit at the same
depth below the checkout, so their compile commands are equal once ccache makes paths
relative to it (CCACHE_BASEDIR), and a package build recompiles only what changed.
EQPROP_CMAKE_ARGS adds CMake options, e.g. "-DEQPROP_NATIVE=OFF" for a wheel that runs
on any x86-64-v2 CPU (the default compiles for this machine's CPU, as ./build does).
"""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
BUILD_DIR = ROOT / os.environ.get("EQPROP_PY_BUILD_DIR", "build-python")


class CMakeExtension(Extension):
    """The module built by CMake target `target`; it has no sources of its own here."""

    def __init__(self, name, target):
        super().__init__(name, sources=[])
        self.target = target


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = BUILD_DIR
        env = dict(os.environ)
        configure = ["cmake", "-S", str(ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                     f"-DPython3_EXECUTABLE={sys.executable}", "-DEQPROP_BUILD_PYTHON=ON",
                     "-DEQPROP_BUILD_TESTS=OFF", "-DEQPROP_BUILD_BENCH=OFF", "-DEQPROP_BUILD_CLI=OFF",
                     "-DEQPROP_NATIVE=ON"]  # EQPROP_CMAKE_ARGS (after it) may override
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        if shutil.which("ccache"):
            configure.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
            env.setdefault("CCACHE_BASEDIR", str(ROOT))
            env.setdefault("CCACHE_NOHASHDIR", "1")
        configure += shlex.split(os.environ.get("EQPROP_CMAKE_ARGS", ""))
        subprocess.run(configure, check=True, env=env)
        jobs = ["-j", str(self.parallel)] if self.parallel else []
        subprocess.run(["cmake", "--build", str(build_dir), "--target", ext.target, *jobs], check=True, env=env)
        built = list((build_dir / "python" / "eqprop").glob("_core*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one _core*.so in {build_dir}/python/eqprop, found {built}")
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[0], dest)


# setuptools' own build and egg-info directories go into the CMake build directory, not
# into ./build (the project's CMake build) and python/.
BUILD_DIR.mkdir(exist_ok=True)
setup(
    version=(ROOT / "VERSION").read_text().strip(),
    packages=["eqprop"],
    package_dir={"": "python"},
    package_data={"eqprop": ["_core.pyi", "py.typed"]},
    ext_modules=[CMakeExtension("eqprop._core", "eqprop_python")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
    options={"build": {"build_base": str(BUILD_DIR / "setuptools")}, "egg_info": {"egg_base": str(BUILD_DIR)}},
)
