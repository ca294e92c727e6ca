"""rpm-ostree's package options outside `install` itself: --install/--uninstall on upgrade, deploy and rebase (one
transaction for the base and the packages), --enablerepo/--disablerepo/--releasever, packages given by URL, and
--force-replacefiles kept in the origin (requested-local-fileoverride) so that the next upgrade still works."""

from __future__ import annotations

import textwrap

from tests.helpers.httpserver import serve
from tests.helpers.rpms import File, Pkg, make_repo
from tests.layering.conftest import deployment_dir, hyb, rpm_q, set_ref, status


def _origin(host, dep) -> str:
    return (host / f"ostree/deploy/{dep['osname']}/deploy/{dep['checksum']}.{dep['serial']}.origin").read_text()


def test_upgrade_with_install_and_uninstall_is_one_transaction(host, layering_env):
    env = layering_env
    set_ref(host, "testos/stable", env.v2)
    out = hyb(host, "upgrade", "--install", "layered-tool").stdout
    deps = status(host)
    assert len(deps) == 2                              # one new deployment: the new base with the package on it
    new = deps[0]
    assert new["base-checksum"] == env.v2 and new["requested-packages"] == ["layered-tool"]
    assert new["packages"] == ["layered-tool"]
    assert rpm_q(deployment_dir(host, new), "layered-tool", "unrequested").returncode == 0
    assert "layered-tool" in out
    # the base did not move: --uninstall alone still makes a new deployment (rpm-ostree's UpdateDeployment)
    hyb(host, "upgrade", "--uninstall", "layered-tool")
    new = status(host)[0]
    assert new["checksum"] == env.v2 and new["requested-packages"] == []
    assert not (deployment_dir(host, new) / "usr/bin/layered-tool").exists()
    # nothing new and nothing to change: unchanged (77 with --unchanged-exit-77)
    assert hyb(host, "upgrade", "--unchanged-exit-77", check=False).returncode == 77
    # rpm-ostree's refusals
    r = hyb(host, "upgrade", "--preview", "--install", "layered-tool", check=False)
    assert (r.returncode, r.stderr) == (1, "error: Cannot specify both --preview and --install/--uninstall\n")
    r = hyb(host, "upgrade", "--check", "--reboot", check=False)
    assert (r.returncode, r.stderr) == (1, "error: Cannot specify both --reboot and --check\n")
    # a package that cannot be layered fails the whole transaction: no new base either
    set_ref(host, "testos/stable", env.v3)
    before = [d["checksum"] for d in status(host)]
    r = hyb(host, "upgrade", "--install", "no-such-package", check=False)
    assert r.returncode == 1 and "no-such-package" in r.stderr
    assert [d["checksum"] for d in status(host)] == before


def test_rebase_and_deploy_with_install(host, layering_env):
    env = layering_env
    hyb(host, "rebase", "testos/v2", "--install", "layered-tool")
    new = status(host)[0]
    assert new["origin"] == "testos/v2" and new["base-checksum"] == env.v2
    assert new["requested-packages"] == ["layered-tool"]
    assert (deployment_dir(host, new) / "usr/bin/layered-tool").exists()
    assert "baserefspec=testos/v2" in _origin(host, new)
    # deploy a version of the (new) origin's branch and drop the package in the same step
    hyb(host, "deploy", f"revision={env.v2}", "--uninstall", "layered-tool")
    new = status(host)[0]
    assert new["checksum"] == env.v2 and new["requested-packages"] == []
    assert f"override-commit={env.v2}" in _origin(host, new)


def test_enablerepo_disablerepo_releasever_choose_the_repositories(host, layering_env, tmp_path):
    make_repo(tmp_path / "srv/39", [
        Pkg("only-here", "1.0", arch="noarch", files=(File("/usr/share/only-here/x", b"x"),))])
    with serve(tmp_path / "srv") as srv:
        [dep] = status(host)
        (deployment_dir(host, dep) / "etc/yum.repos.d/off.repo").write_text(textwrap.dedent(f"""\
            [off]
            name=Disabled by default
            baseurl={srv.url}/$releasever/
            enabled=0
            gpgcheck=0
            """))
        r = hyb(host, "install", "only-here", check=False)
        assert r.returncode == 1 and "no package matches 'only-here'" in r.stderr
        r = hyb(host, "install", "--enablerepo", "nosuch", "only-here", check=False)
        assert r.returncode == 1 and "Unknown repo: 'nosuch'" in r.stderr
        # only that repository: the other's packages are not there for this operation
        r = hyb(host, "install", "--disablerepo", "*", "--enablerepo", "of?", "layered-tool", check=False)
        assert r.returncode == 1 and "no package matches 'layered-tool'" in r.stderr
        # $releasever comes from the deployment's os-release (39) unless --releasever says otherwise
        r = hyb(host, "install", "--releasever", "40", "--enablerepo", "off", "only-here", check=False)
        assert r.returncode == 1 and f"{srv.url}/40/" in r.stderr
        hyb(host, "install", "--enablerepo", "off", "only-here")
        new = status(host)[0]
        assert new["requested-packages"] == ["only-here"]
        assert (deployment_dir(host, new) / "usr/share/only-here/x").read_bytes() == b"x"
        assert [p for p, _, _ in srv.requests if p.endswith(".rpm")]
        # every repository disabled for this operation
        r = hyb(host, "install", "--disablerepo", "extras", "layered-tool", check=False)
        assert (r.returncode, r.stderr) == (1, "error: no enabled package repository after "
                                               "--disablerepo/--enablerepo\n")


def test_install_and_override_replace_by_url(host, layering_env):
    env = layering_env
    rel = env.host_repo.rpms["libbar"].relative_to(env.host_repo.path)
    url = f"{env.server.url}/{rel.as_posix()}"
    hyb(host, "install", url)
    new = status(host)[0]
    assert new["requested-packages"] == [] and new["requested-local-packages"] == ["libbar-1.0-1.noarch"]
    assert "requested-local=" in _origin(host, new)
    assert rpm_q(deployment_dir(host, new), "libbar").returncode == 0
    # kept as a local package: an upgrade to a new base layers it again from the local store, not the URL
    env.server.requests.clear()
    set_ref(host, "testos/stable", env.v2)
    hyb(host, "upgrade")
    assert status(host)[0]["requested-local-packages"] == ["libbar-1.0-1.noarch"]
    assert not [p for p, _, _ in env.server.requests if p.endswith(".rpm")]
    # errors name the URL as written
    missing = f"{env.server.url}/no/such-1.0-1.noarch.rpm"
    r = hyb(host, "install", missing, check=False)
    assert r.returncode == 1 and missing in r.stderr and "Traceback" not in r.stderr
    r = hyb(host, "override", "replace", f"{env.server.url}/repodata/repomd.xml.rpm", check=False)
    assert r.returncode == 1 and f"{env.server.url}/repodata/repomd.xml.rpm" in r.stderr
    r = hyb(host, "install", "https://127.0.0.1:9/foo-1.0-1.src.rpm", check=False)
    assert (r.returncode, r.stderr) == (1, "error: https://127.0.0.1:9/foo-1.0-1.src.rpm appears to be a source RPM "
                                           "which are not usually intended to be installed\n")
    # override replace by URL: hello 2.0 from another server, kept as a local replacement
    with serve(env.rpmdir) as srv:
        hyb(host, "override", "replace", f"{srv.url}/hello-2.0-1.x86_64.rpm")
    new = status(host)[0]
    assert new["requested-base-local-replacements"] == ["hello-2.0-1.x86_64"]
    assert "replace-local=" in _origin(host, new)
    assert rpm_q(deployment_dir(host, new), "hello").stdout.strip() == "hello-2.0-1.x86_64"
    assert not list(__import__("pathlib").Path("/tmp").glob("hybridos-rpm-urls-*"))  # downloads removed


def test_force_replacefiles_of_a_local_package_is_kept_for_upgrades(host, layering_env):
    env = layering_env
    clobber = env.host_repo.rpms["clobber"]
    r = hyb(host, "install", "--force-replacefiles", "clobber", check=False)
    assert r.returncode == 1 and "--force-replacefiles applies to local packages only" in r.stderr
    hyb(host, "install", "--force-replacefiles", str(clobber))
    new = status(host)[0]
    assert new["requested-local-fileoverride-packages"] == ["clobber-1.0-1.noarch"]
    assert new["requested-local-packages"] == []
    assert "requested-local-fileoverride=" in _origin(host, new)
    assert b"clobbered" in (deployment_dir(host, new) / "usr/bin/hello").read_bytes()
    # the next upgrade layers it with the same permission (without it, the conflict would fail the upgrade)
    set_ref(host, "testos/stable", env.v2)
    hyb(host, "upgrade")
    new = status(host)[0]
    assert new["base-checksum"] == env.v2
    assert b"clobbered" in (deployment_dir(host, new) / "usr/bin/hello").read_bytes()
    # uninstalling it drops the key
    hyb(host, "uninstall", "clobber")
    new = status(host)[0]
    assert "fileoverride" not in _origin(host, new) and new["requested-local-fileoverride-packages"] == []


def test_change_summaries_show_what_changed_from_the_previous_deployment(host, layering_env):
    rpm = layering_env.rpmdir / "hello-2.0-1.x86_64.rpm"
    hyb(host, "install", "layered-tool")
    out = hyb(host, "override", "replace", str(rpm)).stdout.splitlines()
    assert out[out.index("Upgraded:") + 1] == "  hello-1.0-1.x86_64 -> hello-2.0-1.x86_64"
    assert "Added:" not in out                     # layered-tool was already there: not shown again
    out = hyb(host, "override", "reset", "hello").stdout.splitlines()
    assert out[out.index("Downgraded:") + 1:out.index("Downgraded:") + 2] == [
        "  hello-2.0-1.x86_64 -> hello-1.0-1.x86_64"]
    assert not {"Added:", "Removed:", "Upgraded:"} & set(out)
    assert out[-1] == 'Changes queued for next boot. Run "systemctl reboot" to start a reboot'
    out = hyb(host, "uninstall", "layered-tool").stdout.splitlines()
    assert out[out.index("Removed:") + 1:out.index("Removed:") + 3] == ["  layered-tool-1.0-1.noarch",
                                                                       "  libbar-1.0-1.noarch"]


def test_reset_with_install_keeps_only_what_it_names(host, layering_env):
    hyb(host, "install", "layered-tool")
    hyb(host, "override", "remove", "hello")
    hyb(host, "reset", "--install", "layered-tool")
    new = status(host)[0]
    assert new["requested-packages"] == ["layered-tool"] and new["requested-base-removals"] == []
    tree = deployment_dir(host, new)
    assert (tree / "usr/bin/layered-tool").exists() and (tree / "usr/bin/hello").exists()
