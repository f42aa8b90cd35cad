"""spanet-tfx: SP&A-Net wafer defect-pattern classification as a TFX / Kubeflow pipeline."""

from setuptools import find_packages, setup

# Direct dependencies; the whole resolved set is pinned in requirements.lock, which
# scripts/setup_env.sh installs first so every machine gets the tested versions.
INSTALL_REQUIRES = [
    "tfx[kfp]==1.16.0",
    "tensorflow==2.16.2",
    "tf-keras==2.16.0",
    "tensorflow-transform==1.16.0",
    "tensorflow-model-analysis==0.47.1",
    "tensorflow-serving-api==2.16.1",
    "kfp==2.5.0",
    "apache-beam[gcp]==2.74.0",
    # apache-beam 2.74 no longer pulls in dill, which tensorflow-transform imports.
    "dill",
    "numpy<2",
    "pandas",
    # Exact binomial (Clopper-Pearson) bounds of the recall gate (components/clopper_pearson.py).
    "scipy",
    "pillow",
    "matplotlib",
    "tqdm",
    # The model card (components/report/model_card.py): Jinja2 template -> Markdown -> HTML.
    "jinja2",
    "markdown",
]

setup(
    name="spanet-tfx",
    version="0.1.0",
    description="SP&A-Net (Yang & Sun, IEEE TSM 2022) wafer defect-pattern classifier as a TFX pipeline",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["spanet", "spanet.*", "components", "components.*", "pipeline", "pipeline.*", "schemas", "schemas.*"]),
    package_data={"schemas": ["*.pbtxt"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest", "pytest-timeout"]},
    entry_points={"console_scripts": ["spanet=spanet.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
