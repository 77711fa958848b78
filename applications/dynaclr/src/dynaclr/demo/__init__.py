"""``dynaclr demo``: a CPU quickstart that trains DynaCLR on synthetic infection time-lapses and evaluates it.

Run ``dynaclr demo`` (or :func:`run_demo` from Python); see :mod:`dynaclr.demo.run`.
"""

from dynaclr.demo.run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
