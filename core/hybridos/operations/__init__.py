"""Host transactions, one layer under both the CLI (in-process) and the daemon.

``verbs`` has one request per rpm-ostree verb (upgrade, deploy, rebase, rollback, package changes and
overrides, kernel arguments, initramfs, cleanup, refresh-md); ``request.run(tx)`` runs it inside a
``hybridos.sysroot.transaction.Transaction`` (lock, steps, progress events, cancellation) and returns an
``Outcome``. ``deploy`` and ``packages`` hold the operations themselves; ``phrases`` what users read for steps.
Layers: cli/, daemon/ -> operations/ -> compose/, layering/ -> sysroot/.
"""
