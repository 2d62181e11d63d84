"""runtime.cli: one line for an error, the traceback with --verbose."""

import errno
import importlib

import pytest
from ml_collections import ConfigDict

from jaxtransfer.runtime import cli


def _fail(error, verbose=False):
    with cli.reported_errors(verbose):
        raise error


def test_an_input_error_is_its_message_alone(capsys):
    with pytest.raises(SystemExit) as stop:
        _fail(ValueError("config.train.learning_rate = -1: expected > 0"))
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err == "error: config.train.learning_rate = -1: expected > 0\n"


def test_a_full_disk_names_the_path(capsys):
    with pytest.raises(SystemExit):
        _fail(OSError(errno.ENOSPC, "No space left on device", "runs/x/AUC.csv"))
    assert capsys.readouterr().err == "error: No space left on device: runs/x/AUC.csv\n"


def test_an_unexpected_error_names_its_kind(capsys):
    with pytest.raises(SystemExit):
        _fail(TypeError("unsupported operand"))
    err = capsys.readouterr().err
    assert err.startswith("error: TypeError: unsupported operand")
    assert "--verbose" in err


def test_verbose_keeps_the_traceback():
    with pytest.raises(ValueError, match="bad"):
        _fail(ValueError("bad"), verbose=True)


def test_interrupts_pass():
    with pytest.raises(KeyboardInterrupt):
        _fail(KeyboardInterrupt())


def test_a_listed_override_of_strings_is_split_like_one_of_numbers():
    # --config.grid.sources='ImageNet, random' leaves one element.
    config = ConfigDict({"grid": {"sources": ("ImageNet, random",), "folds": (1, 2)}})
    cli.split_listed_strings(config)
    assert config.grid.sources == ("ImageNet", "random")
    assert config.grid.folds == (1, 2)


ARGPARSE_COMMANDS = (
    "jaxtransfer.analyze",
    "jaxtransfer.pool",
    "jaxtransfer.extract",
    "jaxtransfer.demo",
    "jaxtransfer.data.prepare",
    "converters.keras_h5",
    "converters.torch_pth",
    "converters.to_keras_h5",
)


@pytest.mark.parametrize("module", ARGPARSE_COMMANDS)
def test_every_command_line_takes_verbose(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    assert "--verbose" in capsys.readouterr().out


def test_the_grid_command_takes_verbose():
    from absl import flags

    import jaxtransfer.main  # noqa: F401  (defines its flags)

    assert flags.FLAGS["verbose"].help == cli.VERBOSE_HELP
