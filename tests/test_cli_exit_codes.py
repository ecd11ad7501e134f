"""The CLI as a user meets it: fast help, exit 2 with one line for user errors, 1 for bugs."""

from __future__ import annotations

import subprocess
import sys


def _run(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "expertune.cli", *args], capture_output=True, text=True, **kw
    )


def test_help_imports_no_torch():
    code = (
        "import sys; from expertune.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported by --help'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_config_show_imports_no_torch(tmp_path):
    env = tmp_path / "c.env"
    env.write_text('export MODEL_NAME="x/y"\n')
    code = (
        "import sys; from expertune.cli import main\n"
        f"assert main(['config', 'show', '--config', {str(env)!r}, '--json']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported by config show'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_user_error_is_one_line_exit_2(tmp_path):
    result = _run("config", "show", "--config", str(tmp_path / "missing.env"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.env" in lines[0]
    assert "Traceback" not in result.stderr


def test_internal_error_exits_non_zero_with_traceback(tmp_path):
    # A crash inside training (an unreadable cache folder that is a file) must not exit 0.
    code = (
        "import sys\n"
        "import expertune.cli as cli\n"
        "def boom(args):\n    raise RuntimeError('simulated bug')\n"
        "cli.COMMANDS['config'] = boom\n"
        "sys.exit(cli.main(['config', 'show']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "simulated bug" in result.stderr


def test_exit_codes_for_each_kind_of_ending(monkeypatch, capsys):
    import signal

    import expertune.cli as cli
    from expertune.errors import ConfigError, Interrupted

    def raising(exc):
        def command(args):
            raise exc

        return command

    endings = [
        (ConfigError("LEARNING_RATE=x (c.env:3): must be a number,\nsee docs"), 2),
        (Interrupted(signal.SIGTERM, "interrupted at step 3; wrote checkpoint-3"), 143),
        (Interrupted(signal.SIGINT, "interrupted at step 3; wrote checkpoint-3"), 130),
        (KeyboardInterrupt(), 130),
        (RuntimeError("simulated bug"), 1),
    ]
    for exc, code in endings:
        monkeypatch.setitem(cli.COMMANDS, "config", raising(exc))
        assert cli.main(["config", "show"]) == code
        err = capsys.readouterr().err
        if code in (2, 130, 143):
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        else:
            assert "Traceback" in err and "simulated bug" in err
            assert err.strip().splitlines()[-1].startswith("expertune: internal error")
