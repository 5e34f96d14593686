"""`rightsizer operator` refuses to start without credentials, with one clear line."""

import os
import subprocess
import sys


def test_operator_without_credentials_is_one_clear_line(tmp_path):
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "missing"), "HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    result = subprocess.run(
        [sys.executable, "-m", "rightsizer.cli", "operator", "--prometheus-url", "http://127.0.0.1:9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no Kubernetes credentials" in result.stderr
    assert "Traceback" not in result.stderr
