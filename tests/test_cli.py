import subprocess

from mesh.process import MESHSRE


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MESHSRE, *args], capture_output=True, text=True, timeout=30,
                          env=env)


def test_serve_rejects_an_unknown_storage_url_in_one_line() -> None:
    result = run("serve", "--port", "0", "--storage", "mysql://x")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "error: unsupported storage URL 'mysql://x': use sqlite:///PATH, postgresql://... "
        "or memory://"
    )


def test_serve_names_the_bad_setting() -> None:
    import os

    env = {**os.environ, "MESH_MAX_INFLIGHT": "lots"}
    result = run("serve", "--port", "0", "--storage", "memory://", env=env)
    assert result.returncode != 0
    assert result.stderr.startswith("error: MESH_MAX_INFLIGHT:")
    assert "Traceback" not in result.stderr


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0 and "serve" in result.stdout
