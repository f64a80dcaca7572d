"""Generates the REST client (`hark_client`) from the repository's OpenAPI document
with openapi-python-client, into the wheel beside the `hark` package, so that the
installed SDK and the server it was built with describe the same API."""

import subprocess
import sys
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# Generated code is left as the generator writes it: no formatter runs here.
CONFIG = "post_hooks: []\n"


class GenerateRestClient(BuildHookInterface):
    def initialize(self, version, build_data):
        document = Path(self.root, "..", "..", "openapi", "openapi.yaml").resolve()
        self._work = tempfile.TemporaryDirectory()
        work = Path(self._work.name)
        (work / "config.yaml").write_text(CONFIG)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "openapi_python_client",
                "generate",
                "--path",
                str(document),
                "--output-path",
                str(work / "hark_client"),
                "--meta",
                "none",
                "--config",
                str(work / "config.yaml"),
            ],
            check=True,
        )
        build_data["force_include"][str(work / "hark_client")] = "hark_client"

    def finalize(self, version, build_data, artifact_path):
        self._work.cleanup()
