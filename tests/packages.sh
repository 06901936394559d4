#!/usr/bin/env bash
# The distro packages, end to end, on this Debian machine (issue 6):
#   build them (scripts/build-packages), lintian, rpm -qlp, dpkg -i, the installed module by its
#   bare name through pamtester with ctap-softtoken, man -w, ctap-enroll --version, the
#   pam-auth-update profile in common-auth (password-only and enrolled users), reinstall,
#   prerm's refusal, dpkg -r (state kept), dpkg --purge (state gone).
#
#   tests/packages.sh            (as root; CI runs it from scripts/test)
#   CTAP_DIST=DIR tests/packages.sh   use packages already built into DIR
#
# It changes the machine: installs libpam-ctap and ctap-tools, writes /etc/pam.d files, adds two
# users, enables the pam-auth-update profile. An EXIT trap puts everything back, also after a
# failure or Ctrl-C: service files and users removed, packages purged, /etc/pam.d/common-* and
# /var/lib/pam restored byte for byte from a backup taken first. PAM is never left broken: the
# common-* files are restored before the module is removed.
# Prints one line per check and ends with "N passed, N failed"; exits 1 if any check failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP tests/packages.sh: needs root (installs packages, writes /etc/pam.d); CI runs as root"
    echo "0 passed, 0 failed"
    exit 0
fi

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
not_ok() {
    failed=$((failed + 1))
    echo "FAIL - $1"
    [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/       | /'
}
# check DESCRIPTION COMMAND...: passes when the command exits 0; shows its output otherwise.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what" "$out"; fi
}
# check_not DESCRIPTION COMMAND...: passes when the command fails.
check_not() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then not_ok "$what" "$out"; else ok "$what"; fi
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

for tool in dpkg pamtester pam-auth-update python3; do
    if ! command -v "$tool" >/dev/null; then
        not_ok "$tool is installed (scripts/install-deps, scripts/install-pkg-tools)"
        finish
        exit 1
    fi
done

packages=(libpam-ctap ctap-tools)
marker=/var/tmp/ctap-packages-test.running
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
present() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -qv "not-installed"; }
for p in "${packages[@]}"; do
    if present "$p" && [ ! -e "$marker" ]; then
        not_ok "$p is not installed before the test" \
            "this test installs and purges $p; it will not touch an installation it did not make"
        finish
        exit 1
    fi
done

# Not under /tmp: the module trusts a key socket only where no one else can replace it (every
# directory up to / root's and not writable by others), and /tmp is world-writable.
work=$(mktemp -d /run/ctap-packages.XXXXXX)
chmod 0755 "$work"
backup=$work/backup
mkdir -p "$backup/pam.d" "$backup/var-lib-pam"
cp -p /etc/pam.d/common-* "$backup/pam.d/"
[ ! -d /var/lib/pam ] || cp -a /var/lib/pam/. "$backup/var-lib-pam/"
touch "$marker"
services=()
users=()
key_pid=
dpkg_excludes_moved=()

restore_pam() {
    cp -p "$backup"/pam.d/common-* /etc/pam.d/
    [ ! -d /var/lib/pam ] || cp -a "$backup/var-lib-pam/." /var/lib/pam/
}
cleanup() {
    set +e
    stop_key
    for s in "${services[@]}"; do rm -f "/etc/pam.d/$s"; done
    # The stack first, the module second: common-* never names a module that is gone.
    restore_pam
    for p in "${packages[@]}"; do
        if present "$p"; then
            CTAP_FORCE_REMOVE=1 DEBIAN_FRONTEND=noninteractive dpkg --purge "$p" >/dev/null 2>&1 ||
                echo "cleanup: dpkg --purge $p failed" >&2
        fi
    done
    restore_pam
    for u in "${users[@]}"; do userdel --remove "$u" 2>/dev/null; done
    for f in "${dpkg_excludes_moved[@]}"; do mv "$f.ctap-test" "$f"; done
    rm -f "$marker"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A leftover of a run that was killed outright: purge it before starting.
for p in "${packages[@]}"; do
    if present "$p"; then
        CTAP_FORCE_REMOVE=1 DEBIAN_FRONTEND=noninteractive dpkg --purge "$p" >/dev/null 2>&1
    fi
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- build, lintian, rpm -qlp ----
dist=${CTAP_DIST:-$work/dist}
if [ -z "${CTAP_DIST:-}" ]; then
    if ! out=$(scripts/build-packages "$dist" 2>&1); then
        not_ok "scripts/build-packages builds the packages" "$(printf '%s\n' "$out" | tail -n 30)"
        finish
        exit 1
    fi
    ok "scripts/build-packages builds the packages"
fi
deb_pam=$(ls "$dist"/libpam-ctap_*.deb 2>/dev/null | head -n 1)
deb_tools=$(ls "$dist"/ctap-tools_*.deb 2>/dev/null | head -n 1)
rpm_pam=$(ls "$dist"/pam-ctap-*.rpm 2>/dev/null | head -n 1)
rpm_tools=$(ls "$dist"/ctap-tools-*.rpm 2>/dev/null | head -n 1)
for f in deb_pam deb_tools rpm_pam rpm_tools; do
    if [ -n "${!f}" ]; then ok "built: $(basename "${!f}")"; else not_ok "built: $f"; fi
done
if [ -z "$deb_pam" ] || [ -z "$deb_tools" ]; then
    finish
    exit 1
fi

if command -v lintian >/dev/null; then
    # --fail-on error: warnings are printed but do not fail (overrides, each with its reason, in
    # packaging/lintian/).
    check "lintian: no errors in the .debs" lintian --fail-on error --tag-display-limit 0 "$deb_pam" "$deb_tools"
    lintian --tag-display-limit 0 "$deb_pam" "$deb_tools" 2>&1 | sed 's/^/       lintian: /'
else
    not_ok "lintian is installed (scripts/install-pkg-tools)"
fi

if command -v rpm >/dev/null && [ -n "$rpm_pam" ] && [ -n "$rpm_tools" ]; then
    list=$(rpm -qlp "$rpm_pam" "$rpm_tools" 2>&1)
    for path in /usr/lib64/security/pam_ctap.so /etc/ctap/pam_ctap.toml \
        /usr/share/man/man8/pam_ctap.8.gz /usr/share/man/man5/pam_ctap.toml.5.gz \
        /usr/bin/ctap-enroll /usr/bin/ctap-sshagent /usr/share/man/man1/ctap-enroll.1.gz \
        /usr/share/man/man1/ctap-sshagent.1.gz /usr/lib/systemd/user/ctap-sshagent.socket \
        /usr/lib/systemd/user/ctap-sshagent.service /usr/bin/ctap-proxy \
        /usr/share/man/man1/ctap-proxy.1.gz /usr/libexec/ctap/ctap-directory-query; do
        if grep -qx "$path" <<<"$list"; then ok "rpm -qlp lists $path"; else not_ok "rpm -qlp lists $path" "$list"; fi
    done
    check "rpm: /etc/ctap/pam_ctap.toml is %config(noreplace)" \
        bash -c "rpm -qcp '$rpm_pam' | grep -qx /etc/ctap/pam_ctap.toml && rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' '$rpm_pam' | grep -qx 'cn /etc/ctap/pam_ctap.toml'"
    check "rpm: pam_ctap.so is 0755 root:root, as Fedora ships PAM modules" \
        bash -c "rpm -qlvp '$rpm_pam' | grep -E '^-rwxr-xr-x .*root +root .* /usr/lib64/security/pam_ctap.so$'"
    check "rpm: %post makes /var/lib/ctap 0700 and /etc/ctap/users 0755" \
        bash -c "s=\$(rpm -qp --scripts '$rpm_pam'); grep -q 'install -d -o root -g root -m 0700 /var/lib/ctap' <<<\"\$s\" && grep -q 'install -d -o root -g root -m 0755 /etc/ctap/users' <<<\"\$s\""
    check_not "rpm: no pam-auth-update profile (Fedora uses authselect)" \
        grep -q pam-configs <<<"$list"
else
    not_ok "rpm is installed and the RPMs were built (scripts/install-pkg-tools)"
fi

# ---------------------------------------------------------------- dpkg -i ----------------------
# Docker-style images exclude /usr/share/man from dpkg (path-exclude in /etc/dpkg/dpkg.cfg.d/).
# In CI only, set such a file aside for the test so `man -w` can be checked; elsewhere the
# page's presence in the package is checked instead.
man_excluded=
for f in /etc/dpkg/dpkg.cfg.d/*; do
    [ -f "$f" ] || continue
    if grep -Eq '^[[:space:]]*path-exclude[[:space:]]*=?[[:space:]]*/usr/share/man' "$f"; then
        if [ "${CI:-}" = true ]; then
            mv "$f" "$f.ctap-test"
            dpkg_excludes_moved+=("$f")
            echo "       note: $f excludes /usr/share/man from dpkg; set aside for this test (CI)"
        else
            man_excluded=$f
        fi
    fi
done

check "dpkg -i installs libpam-ctap and ctap-tools" dpkg -i "$deb_pam" "$deb_tools"
module=/lib/x86_64-linux-gnu/security/pam_ctap.so
check "the module is at $module" test -f "$module"
check "dpkg -L libpam-ctap lists the module, the profile and the pages" bash -c "
    l=\$(dpkg -L libpam-ctap)
    grep -qx $module <<<\"\$l\" && grep -qx /usr/share/pam-configs/ctap <<<\"\$l\" &&
    grep -qx /usr/share/man/man8/pam_ctap.8.gz <<<\"\$l\" &&
    grep -qx /usr/share/man/man5/pam_ctap.toml.5.gz <<<\"\$l\" &&
    grep -qx /usr/libexec/ctap/ctap-directory-query <<<\"\$l\""
check "the directory query program is root-owned 0755, as the module requires" bash -c "
    test \"\$(stat -c '%U %a' /usr/libexec/ctap/ctap-directory-query)\" = 'root 755'"
check "/etc/ctap/pam_ctap.toml is a conffile" \
    bash -c "dpkg-query -W -f='\${Conffiles}' libpam-ctap | grep -q ' /etc/ctap/pam_ctap.toml '"
check "/etc/ctap/users is 0755 root:root" bash -c '[ "$(stat -c %a:%U:%G /etc/ctap/users)" = 755:root:root ]'
check "/var/lib/ctap is 0700 root:root" bash -c '[ "$(stat -c %a:%U:%G /var/lib/ctap)" = 700:root:root ]'
check "installing changed no /etc/pam.d/common-* file" \
    bash -c "for f in $backup/pam.d/*; do cmp \"\$f\" /etc/pam.d/\$(basename \"\$f\") || exit 1; done"
check "ctap-enroll --version runs" bash -c 'ctap-enroll --version | grep -q "^ctap-enroll "'
check "ctap-sshagent --version runs" bash -c 'ctap-sshagent --version | grep -q "^ctap-sshagent "'
check "ctap-proxy --version runs" bash -c 'ctap-proxy --version | grep -q "^ctap-proxy "'
check "systemd user units are installed" \
    test -f /usr/lib/systemd/user/ctap-sshagent.socket -a -f /usr/lib/systemd/user/ctap-sshagent.service
if [ -z "$man_excluded" ]; then
    for page in pam_ctap "5 pam_ctap.toml" ctap-enroll ctap-enroll-enroll ctap-sshagent ctap-proxy; do
        check "man -w $page finds the installed page" bash -c "man -w $page | grep -q '^/usr/share/man/'"
    done
else
    echo "       note: $man_excluded excludes /usr/share/man from dpkg: man -w not checked (CI sets it aside)"
    check "the .deb carries pam_ctap(8)" bash -c "dpkg-deb -c '$deb_pam' | grep -q 'usr/share/man/man8/pam_ctap.8.gz'"
fi

# ---------------------------------------------------------------- the module through PAM ------
softtoken=${CTAP_BIN_DIR:-$CARGO_TARGET_DIR/debug}/ctap-softtoken
if [ ! -x "$softtoken" ]; then
    # The virtual key is in the test framework's workspace, which shares this target directory.
    (cd test-framework && cargo build --quiet -p ctap-softtoken) >/dev/null 2>&1
fi
key_state=$work/key.state
sock=$work/key.sock
start_key() { # start_key [--presence MODE]: the one launcher, scripts/softtoken
    stop_key
    key_pid=$(CTAP_BIN_DIR=${softtoken%/*} CTAP_SOFTTOKEN_LOG=$work/key.log \
        scripts/softtoken start "$sock" "$key_state" "$@")
}
stop_key() {
    if [ -n "$key_pid" ]; then
        scripts/softtoken stop "$key_pid"
        key_pid=
    fi
}
new_user() { # new_user VAR: a throwaway user with a password, removed at exit
    local name
    name=ctappkg$(printf '%06x' $((RANDOM * 32768 + RANDOM)))
    useradd --create-home --shell /bin/sh "$name" && users+=("$name") &&
        echo "$name:pw-$name" | chpasswd && printf -v "$1" '%s' "$name"
}
new_service() { # new_service VAR CONTENT: an /etc/pam.d service file, removed at exit
    local name
    name=ctap-pkg-test-$(printf '%06x' $((RANDOM * 32768 + RANDOM)))
    printf '%s\n' "$2" >"/etc/pam.d/$name"
    services+=("$name")
    printf -v "$1" '%s' "$name"
}
# pamtest SERVICE USER STDIN: pamtester's output; succeeds when PAM said success.
pamtest() {
    local out
    out=$(printf '%s' "$3" | pamtester -v "$1" "$2" authenticate 2>&1)
    printf '%s\n' "$out"
    grep -q "successfully authenticated" <<<"$out"
}

if ! start_key; then
    not_ok "ctap-softtoken starts ($softtoken)" "$(cat "$work/key.log")"
    finish
    exit 1
fi
# The test's policy: the virtual key; records and state in the package's own directories, so
# that dpkg -r and --purge can be checked against them.
config=$work/pam_ctap.toml
printf 'device = "unix:%s"\ntimeout = 10\n' "$sock" >"$config"
chmod 0644 "$config"

alice= && new_user alice
bob= && new_user bob
if [ -z "$alice" ] || [ -z "$bob" ]; then
    not_ok "useradd works"
    finish
    exit 1
fi
check "the installed ctap-enroll enrolls $alice on the virtual key" \
    ctap-enroll --config "$config" enroll --user "$alice" --name virtual --uv discouraged
check "the enrollment record is /etc/ctap/users/$alice.toml" test -f "/etc/ctap/users/$alice.toml"

bare= && new_service bare "auth required pam_ctap.so config=$config
account required pam_permit.so"
check "pamtester: pam_ctap.so by its bare name accepts $alice's key" pamtest "$bare" "$alice" ""
check "the login wrote /var/lib/ctap/$alice.toml (0600)" \
    bash -c "[ \"\$(stat -c %a /var/lib/ctap/$alice.toml)\" = 600 ]"
check_not "pamtester: $bob, who has no key, is refused" pamtest "$bare" "$bob" ""
start_key --presence deny
check_not "pamtester: presence denied on the key is refused" pamtest "$bare" "$alice" ""
start_key
check "pamtester: and accepted again once the key is touched" pamtest "$bare" "$alice" ""

# ---------------------------------------------------------------- pam-auth-update profile -----
# common-auth uses root's own policy file: point it at the virtual key, as an admin would.
sed -i "s|^device = .*|device = \"unix:$sock\"|; s|^timeout = .*|timeout = 10|" /etc/ctap/pam_ctap.toml
common= && new_service common "@include common-auth
account required pam_permit.so"

check "pam-auth-update --package did not enable the profile (Default: no)" \
    bash -c "! grep -q pam_ctap /etc/pam.d/common-auth"
check "pam-auth-update --enable ctap" pam-auth-update --enable ctap
check "common-auth: pam_ctap.so comes after pam_unix.so" bash -c "
    u=\$(grep -n 'pam_unix.so' /etc/pam.d/common-auth | head -n 1 | cut -d: -f1)
    c=\$(grep -n 'pam_ctap.so' /etc/pam.d/common-auth | head -n 1 | cut -d: -f1)
    [ -n \"\$u\" ] && [ -n \"\$c\" ] && [ \"\$u\" -lt \"\$c\" ]"
grep -E 'pam_(unix|deny|permit|ctap)' /etc/pam.d/common-auth | sed 's/^/       common-auth: /'

check "common-auth: password-only user $bob logs in with the password" \
    pamtest "$common" "$bob" "pw-$bob"$'\n'
check_not "common-auth: $bob with a wrong password is refused" \
    pamtest "$common" "$bob" "wrong"$'\n'
out=$(pamtest "$common" "$alice" "pw-$alice"$'\n')
rc=$?
if [ $rc -eq 0 ] && grep -q "Touch your security key" <<<"$out"; then
    ok "common-auth: enrolled $alice gives the password, is asked for the key, logs in"
else
    not_ok "common-auth: enrolled $alice gives the password, is asked for the key, logs in" "$out"
fi
start_key --presence deny
check_not "common-auth: enrolled $alice with the password but no touch is refused" \
    pamtest "$common" "$alice" "pw-$alice"$'\n'
start_key
out=$(pamtest "$common" "$alice" "wrong"$'\n')
rc=$?
if [ $rc -ne 0 ] && ! grep -q "Touch your security key" <<<"$out"; then
    ok "common-auth: $alice with a wrong password is refused before the key is asked"
else
    not_ok "common-auth: $alice with a wrong password is refused before the key is asked" "$out"
fi

# ---------------------------------------------------------------- upgrade, remove, purge ------
check "reinstalling (the upgrade path) with the profile enabled" dpkg -i "$deb_pam"
check "common-auth still has pam_ctap.so after the reinstall" grep -q pam_ctap.so /etc/pam.d/common-auth
check "common-auth: $bob still logs in after the reinstall" pamtest "$common" "$bob" "pw-$bob"$'\n'
check "/etc/ctap/pam_ctap.toml kept its local edit" grep -q "unix:$sock" /etc/ctap/pam_ctap.toml

check_not "dpkg -r refuses while /etc/pam.d/$bare still uses pam_ctap.so" dpkg -r libpam-ctap
check "... and the module is still there" test -f "$module"
check "... and common-auth still works for $bob" pamtest "$common" "$bob" "pw-$bob"$'\n'
rm -f "/etc/pam.d/$bare"

check "dpkg -r libpam-ctap" dpkg -r libpam-ctap
check "dpkg -r removed the module" test ! -e "$module"
check "dpkg -r took pam_ctap.so out of common-auth first" bash -c "! grep -q pam_ctap /etc/pam.d/common-auth"
check "common-auth after dpkg -r: $bob logs in with the password" pamtest "$common" "$bob" "pw-$bob"$'\n'
check "common-auth after dpkg -r: $alice logs in with the password" pamtest "$common" "$alice" "pw-$alice"$'\n'
check "dpkg -r kept the state /var/lib/ctap/$alice.toml" test -f "/var/lib/ctap/$alice.toml"
check "dpkg -r kept the records /etc/ctap/users/$alice.toml" test -f "/etc/ctap/users/$alice.toml"
check "dpkg -r kept the conffile /etc/ctap/pam_ctap.toml" test -f /etc/ctap/pam_ctap.toml
check "ctap-tools is still installed" installed ctap-tools

check "dpkg --purge libpam-ctap" dpkg --purge libpam-ctap
check "dpkg --purge removed /var/lib/ctap" test ! -e /var/lib/ctap
check "dpkg --purge removed /etc/ctap" test ! -e /etc/ctap
check "dpkg --purge ctap-tools" dpkg --purge ctap-tools
check "dpkg --purge removed ctap-enroll" test ! -e /usr/bin/ctap-enroll
check "common-* are as before the test" \
    bash -c "for f in $backup/pam.d/*; do cmp \"\$f\" /etc/pam.d/\$(basename \"\$f\") || exit 1; done"

finish
