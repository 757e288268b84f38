"""Thin adapters of :mod:`lbconvert.monitor` to training frameworks, each in its own idiom:
``lightning`` (a ``Callback``) and ``hf`` (a ``TrainerCallback``). The frameworks are optional:
import a module here only where that framework is installed."""
