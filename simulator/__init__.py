"""Simulator of the external model APIs cofi calls (GPU stage servers and an LLM endpoint).

Not part of the product: it stands in for real model servers in the demo and the tests.
"""

from simulator.config import SimConfig, load_config, parse_hosts
from simulator.core import Simulator

__all__ = ["SimConfig", "Simulator", "load_config", "parse_hosts"]
