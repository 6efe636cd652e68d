"""Hostile inputs through the Python entry points: deep nesting is a ConfigError (not a
stack overflow), a FIFO given as a config file is refused without blocking."""
import os
import struct
import zlib

import pytest

import eqprop


def nested_dict(depth, leaf):
    d = leaf
    for _ in range(depth):
        d = {"a": d}
    return d


@pytest.mark.parametrize("arg", ["config", "overrides"])
def test_dict_nested_15000_deep_is_config_error(arg):
    with pytest.raises(eqprop.ConfigError, match="nests more than 64 levels"):
        eqprop.train(**{arg: nested_dict(15000, 1)})


def test_fifo_as_config_file_is_refused(tmp_path):
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with pytest.raises(eqprop.ConfigError, match="not a regular file"):
        eqprop.train(config=str(fifo))


def test_checkpoint_with_deep_config_is_data_error(tmp_path):
    header = '{"meta": {"config": ' + "[" * 8000 + "]" * 8000 + '}, "arrays": [], "data_length": 0}'
    header += " " * ((-(20 + len(header))) % 8)
    body = b"EQPROPCK" + struct.pack("<IQ", 1, len(header)) + header.encode()
    path = tmp_path / "deep.eqck"
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(eqprop.DataError, match="nests more than"):
        eqprop.load_checkpoint(str(path))
