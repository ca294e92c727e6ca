"""hybridosd: the system daemon speaking rpm-ostree's D-Bus API (``org.projectatomic.rpmostree1``).

``names`` (bus names, paths, errors, polkit actions), ``dicts`` (deployment dictionaries and rpm diffs, pure),
``peer`` (peer-to-peer D-Bus server for transactions), ``txn`` (a transaction: one operation in a worker
thread, its signals), ``auth`` (uid 0 / polkit / read-only), ``service`` (the Sysroot and OS objects),
``main`` (``hybridosd``). The methods only parse, authorize and hand one ``hybridos.operations`` request
to a transaction.
"""
