# Shell helpers shared by the fork's tools.  Sourced, not executed.

fork_git() {
    git -c user.name="${GIT_AUTHOR_NAME:-OVS vhost async fork}" \
        -c user.email="${GIT_AUTHOR_EMAIL:-dev@ovs-vhost-async.invalid}" \
        -c commit.gpgsign=false -c core.autocrlf=false "$@"
}

# Files of the release tarball that autotools generate; OVS's repository
# does not track them, nor does the assembled tree.
fork_generated_patterns() {
    cat <<'EOP'
/.fork-git/
/.fork-assembled
/configure
/aclocal.m4
/config.h.in
/package.m4
Makefile.in
/build-aux/compile
/build-aux/config.guess
/build-aux/config.sub
/build-aux/depcomp
/build-aux/install-sh
/build-aux/ltmain.sh
/build-aux/missing
/build-aux/ar-lib
/build-aux/test-driver
/m4/libtool.m4
/m4/ltoptions.m4
/m4/ltsugar.m4
/m4/ltversion.m4
/m4/lt~obsolete.m4
/tests/testsuite
/tests/*-testsuite
EOP
}

# Prints the upstream files of TREE that differ from the last commit.
fork_upstream_edits() {
    fork_git --git-dir="$1/.fork-git" status --porcelain \
        --untracked-files=no | cut -c4-
}

# Runs git in the assembled tree TREE from its top directory.
fork_tree() {
    cd "$1" && export GIT_DIR=$PWD/.fork-git GIT_WORK_TREE=$PWD
}
