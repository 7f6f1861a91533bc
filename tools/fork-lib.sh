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

# Unpacks SOURCE (an OVS tarball or unpacked source directory) into DIR,
# which must not exist yet, and makes DIR a git tree (repository .fork-git)
# whose first commit, tagged "pristine", is the import.  Prints the OVS
# version.
fork_import() {
    local source=$1 dir=$2 version
    mkdir -p "$dir" || return 1
    if test -d "$source"; then
        (cd "$source" && tar cf - --exclude=.git .) | tar xf - -C "$dir"
    else
        tar xf "$source" -C "$dir" --strip-components=1
    fi || return 1
    if ! test -f "$dir/vswitchd/vswitch.ovsschema"; then
        echo "${0##*/}: $source does not look like an Open vSwitch source" >&2
        return 1
    fi
    version=$(sed -n "s/^PACKAGE_VERSION='\(.*\)'$/\1/p" "$dir/configure")
    # The tree's repository is not called .git: OVS's build runs extra
    # checks on git checkouts of its own repository, which this tree is not.
    (
        cd "$dir" && export GIT_DIR=$PWD/.fork-git GIT_WORK_TREE=$PWD
        fork_git init -q
        # Generated files stay untracked, as in OVS's own repository, so
        # that OVS's git-based build checks and "git status" see only real
        # sources.
        fork_generated_patterns > .fork-git/info/exclude
        cp .fork-git/info/exclude .fork-git/info/exclude.generated
        fork_git add -A
        fork_git commit -q -m "Import Open vSwitch $version (pristine)."
        fork_git tag pristine
    ) || return 1
    echo "$version"
}

# Applies PATCH (a "git format-patch" file) to the git tree in the current
# directory (GIT_DIR and GIT_WORK_TREE set, as by fork_tree) as a commit,
# with no fuzz ("git am" never applies with fuzz).  On failure, prints git's
# complaint on stderr and leaves the tree as it was.
fork_apply() {
    local err
    if ! err=$(fork_git am -q --keep-cr "$1" 2>&1 >/dev/null); then
        echo "$err" >&2
        fork_git am --abort >/dev/null 2>&1 || true
        return 1
    fi
}

# Prints the OVS version of the source tree DIR.
fork_version() {
    sed -n "s/^PACKAGE_VERSION='\(.*\)'$/\1/p" "$1/configure"
}

# Prints the directory of the series for OVS VERSION in SRCDIR: one series
# per OVS minor version, patches/ovs-X.Y.  Fails, saying so, if there is
# none.
fork_patches_dir() {
    local dir
    dir=$1/patches/ovs-$(echo "$2" | cut -d. -f1,2)
    if ! test -f "$dir/series"; then
        echo "${0##*/}: no patch series for OVS $2 (no $dir/series)" >&2
        return 1
    fi
    echo "$dir"
}

# Prints the patch file names of SERIES (patches/ovs-X.Y/series), one a
# line.
fork_series() {
    grep -v '^#' "$1" | grep . || true
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
