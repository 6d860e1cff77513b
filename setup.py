"""Install frsurvey: ``pip install -e .`` (add ``[test]`` for the test suite)."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
for line in (here / "frsurvey" / "_utils.py").read_text().splitlines():
    if line.startswith("__version__"):
        version["v"] = line.split("=")[1].strip().strip("\"'")

setup(
    name="frsurvey",
    version=version["v"],
    description="Batch Fanaroff-Riley classification of radio sources in FIRST images, for whole catalogs",
    long_description=(here / "README.md").read_text(encoding="utf-8") if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["frsurvey", "frsurvey.*"]),
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "astropy>=6.0",
        "astroquery>=0.4.7",
        "torch>=2.1",
        "torchvision>=0.16",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "pillow>=9.0",
        "pyvo>=1.4",
        "platformdirs>=3",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "ruff>=0.5"],
        "dask": ["dask[distributed]>=2023.1"],
    },
    data_files=[("share/frsurvey/checkpoints", [str(p) for p in sorted((here / "checkpoints").glob("*.pt"))])],
    entry_points={"console_scripts": ["frsurvey = frsurvey.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Astronomy",
        "Intended Audience :: Science/Research",
    ],
)
