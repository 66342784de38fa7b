from setuptools import find_packages, setup

setup(
    name="calisim",
    version="0.1.0",
    description="Project Calico's Docker-era container networking, emulated on one Linux machine",
    python_requires=">=3.11",
    packages=find_packages(include=["calisim", "calisim.*", "topologies", "bird_configs"]),
    package_data={"bird_configs": ["*.j2"], "calisim.scenarios": ["transcripts/*.txt"],
                  "calisim.felix": ["bpf/*.c", "bpf/*.bpf.o"],
                  "calisim.web": ["static/*"]},
    install_requires=[
        "aetcd", "grpcio", "protobuf", "mininet", "pyroute2", "scapy", "jinja2", "PyYAML", "rich", "graphviz",
        "aiohttp",
    ],
    extras_require={"test": ["pytest", "hypothesis", "docker", "playwright"], "bench": ["matplotlib"]},
    entry_points={
        "console_scripts": [
            "calisim=calisim.cli:main",
            "calicoctl=calisim.calicoctl:main",
            "routereflector=calisim.node.routereflector:main",
        ],
    },
)
