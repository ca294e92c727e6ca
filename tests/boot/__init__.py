"""QEMU boot harness: composed images boot real Debian kernels through real firmware and bootloaders.

Module API (each module's docstring has the details):

- :mod:`tests.boot.kernels` -- ``debian_kernel(arch)``: Debian's ``linux-image-*`` package fetched with
  ``apt-get download``, unpacked with ``dpkg-deb -x`` (never installed), trimmed, cached by version.
- :mod:`tests.boot.distro` -- ``make_boot_repo(dir, kernel, busybox, extra=[Pkg...], version=)``: real RPMs
  (filesystem, static busybox, the kernel, ``boottest-init``) plus any ``extra`` packages, in a createrepo_c
  repository; ``treefile(ref, packages=...)``; ``MARKER``, the line the guest's init prints.
- :mod:`tests.boot.sysroot` -- ``compose(...)`` (``hybridos compose tree``), ``deploy_sysroot(root, composed,
  kargs, options=, prepare=)``, ``upgrade_sysroot``, ``write_var_data``, ``bls_entries``.
- :mod:`tests.boot.disk` -- ``ext4_image``, ``vfat_image``, ``assemble(disk, [Partition...])`` (sfdisk + dd on
  image files; no loop devices, no mounts), ``vfat_read``/``vfat_list``.
- :mod:`tests.boot.qemu` -- ``boot(Machine(...), disks, workdir, timeout=, kernel=, initrd=, append=)`` ->
  ``BootResult`` (``console``, ``markers()``, ``expect(pattern)`` failing with the last console lines).
  KVM when ``/dev/kvm`` really runs a kernel, else TCG (``HYBRIDOS_BOOT_ACCEL=tcg|kvm`` decides).

The guest's ``/sbin/init`` runs ``/etc/boottest/run`` when it is executable (a test's own in-guest steps) and
then powers off; ``boottest.noexit`` keeps it running. Session fixtures in ``conftest.py`` share the kernel and
the composed repositories between tests; every boot test is ``@pytest.mark.slow``.
"""
