"""The gluon-caffe command line."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "gluon_caffe", *args], capture_output=True, text=True, timeout=120)


def test_info_json():
    proc = run("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert len(info["patch_id"]) == 12 and info["flags"]["CPU_ONLY"]


def test_info_table():
    proc = run("info")
    assert proc.returncode == 0, proc.stderr
    assert "patch id" in proc.stdout and "0002-recoverable-check-failures.patch" in proc.stdout


def test_no_command_prints_help_and_fails():
    proc = run()
    assert proc.returncode == 2
    assert "info" in proc.stdout
