"""Audit the locked dependencies (uv.lock) for known vulnerabilities with pip-audit.

    uv run python scripts/audit_dependencies.py [--service pypi|osv]

Exit status: 0 no known vulnerability, 1 vulnerabilities found (listed), 2 the advisory source
could not be reached or answered for none of the packages (offline, or a mirror without the
PyPI JSON API) -- an unaudited run is reported as such, never as clean.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = 2


def locked_requirements() -> str:
    return subprocess.run(
        ["uv", "export", "--frozen", "--format", "requirements-txt", "--no-hashes", "--quiet"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def audit(service: str, timeout: float) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(locked_requirements())
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip_audit",
                "--requirement",
                handle.name,
                "--no-deps",
                "--disable-pip",
                "--vulnerability-service",
                service,
                "--format",
                "json",
                "--progress-spinner",
                "off",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"pip-audit: {service} did not answer within {timeout:.0f} s: not audited")
        return UNREACHABLE
    finally:
        Path(handle.name).unlink(missing_ok=True)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"pip-audit could not query {service}: {last}: not audited")
        return UNREACHABLE
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        reason = deps[0].get("skip_reason", "no dependencies") if deps else "no dependencies"
        print(f"pip-audit: {service} answered for none of {len(deps)} packages ({reason})")
        return UNREACHABLE
    vulnerable = [d for d in audited if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            print(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})")
    skipped = len(deps) - len(audited)
    print(
        f"pip-audit via {service}: {len(audited)} packages audited, {skipped} skipped, "
        f"{len(vulnerable)} vulnerable"
    )
    return 1 if vulnerable else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=["pypi", "osv"], default="pypi")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    return audit(args.service, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
