"""Every public callable has a real signature and a docstring; the type stub of _core covers
every public name of the compiled module, with the parameters it really has."""
import ast
import inspect
import os

import pytest

import eqprop
from eqprop import _core

STUB = os.path.join(os.path.dirname(_core.__file__), "_core.pyi")


def public_callables():
    for name in eqprop.__all__:
        obj = getattr(eqprop, name)
        if callable(obj):
            yield name, obj


@pytest.mark.parametrize("name,obj", list(public_callables()))
def test_every_public_callable_has_a_signature_and_a_docstring(name, obj):
    sig = inspect.signature(obj)  # raises ValueError for a builtin without a text signature
    assert inspect.getdoc(obj), f"eqprop.{name} has no docstring"
    assert "\n--\n" not in inspect.getdoc(obj), f"eqprop.{name}: the text-signature marker leaks into __doc__"
    for p in sig.parameters.values():
        assert not p.name.startswith("arg"), f"eqprop.{name}: unnamed parameter {p.name}"
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        for mname, meth in vars(obj).items():
            if not mname.startswith("_") and callable(meth):
                inspect.signature(meth)
                assert inspect.getdoc(meth), f"eqprop.{name}.{mname} has no docstring"


def test_all_lists_every_public_name():
    public = {n for n in dir(eqprop) if not n.startswith("_") and not inspect.ismodule(getattr(eqprop, n))}
    assert public - set(eqprop.__all__) == set()
    assert set(eqprop.__all__) <= set(dir(eqprop))


def test_signatures_name_the_real_parameters_and_defaults():
    assert str(inspect.signature(eqprop.relax)) == (
        "(net, x, y=None, beta=0.0, steps=100, tol=0.0, stop_early=False, noise_std=0.0, noise_seed=0)")
    sig = inspect.signature(eqprop.Network)
    assert list(sig.parameters)[:3] == ["sizes", "readout", "output"]
    assert sig.parameters["conv_kernel"].default == [3]
    assert sig.parameters["input_shape"].default is None
    assert inspect.signature(eqprop.train).parameters["resume"].default is False
    net = eqprop.Network(sizes=[4, 5], readout=3)
    assert str(inspect.signature(net.block)) == "(name)"  # bound: self is dropped, name kept
    assert list(inspect.signature(eqprop.Network.block).parameters) == ["self", "name"]
    # The signature is what the function accepts: calling by those keywords works.
    x, y = eqprop.random_batch(4, 3, batch=2, seed=0)
    states, rep = eqprop.relax(net=net, x=x, y=y, beta=0.0, steps=3, tol=0.0, stop_early=False, noise_std=0.0,
                               noise_seed=0)
    assert rep["steps"] == 3


def _stub_tree():
    with open(STUB) as f:
        return ast.parse(f.read())


def test_stub_names_every_public_attribute_of_core():
    names = set()
    for node in _stub_tree().body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    public = {n for n in dir(_core) if not n.startswith("_") or n == "__version__"}
    assert public - names == set(), f"missing from _core.pyi: {sorted(public - names)}"
    assert names - set(dir(_core)) == set(), f"in _core.pyi but not in _core: {sorted(names - set(dir(_core)))}"


def _stub_params(fn, method=False):
    a = fn.args
    args = a.args[1:] if method else a.args
    defaults = [None] * (len(args) - len(a.defaults)) + list(a.defaults)
    return [(p.arg, inspect.Parameter.empty if d is None else ast.literal_eval(d)) for p, d in zip(args, defaults)]


def _real_params(obj):
    return [(p.name, p.default) for p in inspect.signature(obj).parameters.values()]


def test_stub_functions_have_the_real_parameters_and_defaults():
    checked = 0
    for node in _stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            assert _stub_params(node) == _real_params(getattr(_core, node.name)), node.name
            checked += 1
        elif isinstance(node, ast.ClassDef) and not issubclass(getattr(_core, node.name), BaseException):
            cls = getattr(_core, node.name)
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and not any(  # properties and their setters
                        (isinstance(d, ast.Name) and d.id == "property")
                        or (isinstance(d, ast.Attribute) and d.attr == "setter") for d in fn.decorator_list):
                    real = _real_params(getattr(cls, fn.name))[1:]  # without self
                    assert _stub_params(fn, method=True) == real, f"{node.name}.{fn.name}"
                    checked += 1
    assert checked > 30


def test_stub_and_marker_are_installed_with_the_package():
    pkg = os.path.dirname(_core.__file__)
    assert os.path.isfile(os.path.join(pkg, "py.typed"))
    assert os.path.isfile(os.path.join(pkg, "_core.pyi"))
