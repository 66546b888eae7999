"""Print the yarn `resolutions` that pin every @jupyterlab/* package this extension pulls in.

The npm registry reachable from our machines lacks some @jupyterlab/* packages of the newest patch
release, so the extension builds against one complete release (see package.json "resolutions").
This walks the dependencies of the direct @jupyterlab/* dependencies at that release with
`npm view` and prints the pins as JSON; paste them into package.json and run `jlpm install`.

    python scripts/jupyterlab_closure.py 4.6.4
"""

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PACKAGE_JSON = Path(__file__).resolve().parents[1] / "package.json"


def dependencies(name: str, version: str) -> dict[str, str]:
    result = subprocess.run(
        ["npm", "view", f"{name}@{version}", "dependencies", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout or "{}")


def closure(release: str) -> dict[str, str]:
    package = json.loads(PACKAGE_JSON.read_text())
    # Roots: the direct dependencies versioned like the release itself (4.6.x); the others
    # (apputils 4.7.x, services 7.6.x, ...) are found through them with their matching versions.
    major_minor = release.rsplit(".", 1)[0] + "."
    pinned = {
        name: release
        for name, wanted in package["dependencies"].items()
        if name.startswith("@jupyterlab/") and wanted.lstrip("^~").startswith(major_minor)
    }
    frontier = list(pinned.items())
    conflicts = []
    with ThreadPoolExecutor(6) as pool:
        while frontier:
            found = list(pool.map(lambda item: dependencies(*item), frontier))
            frontier = []
            for deps in found:
                for name, wanted in deps.items():
                    if not name.startswith("@jupyterlab/"):
                        continue
                    version = re.sub(r"^[\^~]", "", wanted)
                    if name not in pinned:
                        pinned[name] = version
                        frontier.append((name, version))
                    elif pinned[name] != version:
                        conflicts.append((name, pinned[name], version))
    if conflicts:
        raise SystemExit(f"packages of the release disagree on versions: {conflicts}")
    pinned["@jupyterlab/core-meta"] = release
    return dict(sorted(pinned.items()))


if __name__ == "__main__":
    print(json.dumps(closure(sys.argv[1] if len(sys.argv) > 1 else "4.6.4"), indent=2))
