"""Running a command line's ``main`` in-process and reading how it ended."""

import pytest


def fails(main, argv, capsys) -> str:
    """Runs ``main(argv)``, which must end with one error message (status 1, no
    traceback); returns what it printed to stderr."""
    capsys.readouterr()  # what came before is not this command's
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 1, err
    assert "Traceback" not in err
    assert err.startswith("error: "), err
    return err
