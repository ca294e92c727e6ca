"""Sysroots and deployments, laid out exactly as ``ostree admin`` lays them out.

Split by concern like libostree: ``sysroot`` (loading), ``deployment`` (the value type), ``origin``,
``kargs``, ``bls``, ``etcmerge``, ``deploy`` (writing a new deployment list), ``cleanup``, ``lock``,
``transaction`` and ``upgrade``. Modules are imported on demand so that ``status`` stays fast.
"""
