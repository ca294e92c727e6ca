"""search (rpm-ostree's): names and summaries of the enabled repositories' packages, in its three match groups."""

from __future__ import annotations

import textwrap

from tests.helpers.httpserver import serve
from tests.helpers.rpms import Pkg, make_repo
from tests.layering.conftest import deployment_dir, hyb, status


def test_search_groups_like_rpm_ostree(host, layering_env, tmp_path):
    repo = make_repo(tmp_path / "editors", [
        Pkg("vim", "9.0", arch="noarch", summary="The VIM editor"),
        Pkg("vim-minimal", "9.0", arch="noarch", summary="A minimal version of the VIM editor"),
        Pkg("neovim", "0.9", arch="noarch", summary="Vim-fork focused on extensibility"),
        Pkg("editor-tools", "1.0", arch="noarch", summary="Tools for vim users"),
        Pkg("nano", "7.2", arch="noarch", summary="A small text editor"),
    ])
    with serve(repo.path) as srv:
        [dep] = status(host)
        (deployment_dir(host, dep) / "etc/yum.repos.d/editors.repo").write_text(textwrap.dedent(f"""\
            [editors]
            name=Editors
            baseurl={srv.url}
            gpgcheck=0
            """))

        def search(*terms):
            return hyb(host, "search", "--disablerepo", "extras", *terms).stdout

        assert search("vim") == textwrap.dedent("""
            ===== Summary & Name Matched =====
            neovim : Vim-fork focused on extensibility
            vim : The VIM editor
            vim-minimal : A minimal version of the VIM editor

            ===== Name Matched =====
            vim : The VIM editor
            neovim : Vim-fork focused on extensibility
            vim-minimal : A minimal version of the VIM editor

            ===== Summary Matched =====
            editor-tools : Tools for vim users
            neovim : Vim-fork focused on extensibility
            vim : The VIM editor
            vim-minimal : A minimal version of the VIM editor
            """)
        # several terms: every term must match
        out = search("VIM", "minimal")
        assert out.count("vim-minimal : A minimal version of the VIM editor") == 3 and "neovim" not in out
        # globs, case-insensitively
        assert search("N*O") == "\n===== Name Matched =====\nnano : A small text editor\n"
        assert search("zzz") == "No matches found.\n"
        # the layered packages' repository is searched when enabled
        assert "layered-tool : layered-tool fixture" in hyb(host, "search", "layered").stdout
        # nothing was deployed
        assert len(status(host)) == 1
    r = hyb(host, "search", check=False)
    assert r.returncode == 1 and "Missing argument" in r.stderr
