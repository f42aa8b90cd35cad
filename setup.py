"""spanet-tfx: SP&A-Net wafer defect-pattern classification as a TFX / Kubeflow pipeline."""

from setuptools import find_packages, setup

import os


def _requirements(name: str) -> list:
    """The requirement lines of ``name`` (comments, blank lines and ``-c`` / ``-r`` options left out)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    with open(path, encoding="utf-8") as handle:
        lines = (line.split("#", 1)[0].strip() for line in handle)
        return [line for line in lines if line and not line.startswith("-")]


# Direct dependencies: requirements.in is the one list; the whole resolved set is pinned in
# requirements.lock, which scripts/setup_env.sh installs first so every machine gets the tested versions.
INSTALL_REQUIRES = _requirements("requirements.in")

setup(
    name="spanet-tfx",
    version="0.1.0",
    description="SP&A-Net (Yang & Sun, IEEE TSM 2022) wafer defect-pattern classifier as a TFX pipeline",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=find_packages(
        include=["spanet", "spanet.*", "components", "components.*", "pipeline", "pipeline.*", "schemas", "schemas.*"]
    ),
    package_data={"schemas": ["*.pbtxt"], "components.report": ["templates/*.j2"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": _requirements("requirements-dev.in")},
    entry_points={"console_scripts": ["spanet=spanet.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
