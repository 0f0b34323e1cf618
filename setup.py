"""emu: a cycle-level x86 emulator with a VMX-like monitor (see README.md)."""
from setuptools import find_packages, setup

setup(
    name="emu",
    version="0.1.0",
    description="Cycle-level x86 emulator with a VMX-like monitor that validates guests from a VM-exit trap",
    packages=find_packages(include=["emu", "emu.*"]),
    package_data={"emu": ["py.typed"], "emu.cpu": ["*.c"]},
    python_requires=">=3.11",
    install_requires=[
        "unicorn==2.1.4",
        "capstone>=5.0",
        "construct>=2.10,<2.11",
        "pyelftools>=0.29",
    ],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"]},
    entry_points={"console_scripts": ["emu=emu.cli:main"]},
)
