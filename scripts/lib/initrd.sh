# Shared by the real-system initramfs builds (scripts/xen/build-initrd.sh, scripts/kvm/build-initrd.sh).
# Source it after setting sysroot (the unpacked packages); then initrd_begin. Defines functions only,
# plus MODPATH (module name -> .ko path) on initrd_modules_index.
#
#   initrd_begin FETCH_SCRIPT    checks (sysroot, root), sources the sysroot's .ptc-versions, sets kver, mods
#   skeleton DIR                 usr-merged root with /dev/console, /dev/null, root in passwd/group
#   busybox_links DIR            busybox + a link for every applet DIR does not already provide
#   initrd_modules_index         fill MODPATH from $sysroot/lib/modules/$kver
#   install_modules DIR MOD...   the modules and their dependencies, then depmod (the sysroot's kmod)
#   install_node DIR             this machine's node binary + the libraries DIR lacks
#   check_libs DIR BIN...        every BIN resolves all its libraries inside DIR (chroot + ld.so --list)
#   make_cpio DIR FILE           a newc cpio of DIR (sorted, owner 0:0, reproducible)

log() { printf 'build: %s\n' "$*"; }
die() { printf 'build: %s\n' "$*" >&2; exit 1; }

initrd_begin() {
  [[ -f $sysroot/.ptc-versions ]] || die "no sysroot at $sysroot: run $1 first"
  [[ $(id -u) == 0 ]] || die "needs root (device nodes in the initramfs, chroot for the library check)"
  # shellcheck source=/dev/null
  source "$sysroot/.ptc-versions" # KABI KVER and the harness's own versions
  kver=$KABI-amd64
  mods=$sysroot/lib/modules/$kver
}

# usr-merged skeleton: /bin /sbin /lib /lib64 are links into /usr.
skeleton() {
  local r=$1
  mkdir -p "$r"/usr/{bin,sbin,lib,lib64} "$r"/{proc,sys,dev,run,tmp,root,etc,mnt}
  ln -s usr/bin "$r/bin"; ln -s usr/sbin "$r/sbin"; ln -s usr/lib "$r/lib"; ln -s usr/lib64 "$r/lib64"
  chmod 1777 "$r/tmp"
  mkdir -p "$r/var/lib" "$r/var/log"
  ln -s /run "$r/var/run" # DESIGN §9: without /var/run -> /run, `xl destroy` leaves zombies
  ln -s /run/lock "$r/var/lock"
  mknod -m 600 "$r/dev/console" c 5 1
  mknod -m 666 "$r/dev/null" c 1 3
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
  printf 'root:x:0:\n' >"$r/etc/group"
}

# busybox applet links for every applet that the root does not already provide (kmod's modprobe,
# insmod, ... win over busybox's).
busybox_links() {
  local r=$1 applet name
  install -m 755 "$sysroot/bin/busybox" "$r/usr/bin/busybox"
  while read -r applet; do
    name=${applet##*/}
    [[ -e $r/usr/bin/$name || -e $r/usr/sbin/$name || -L $r/usr/bin/$name || -L $r/usr/sbin/$name ]] && continue
    ln -s busybox "$r/usr/bin/$name"
  done < <("$sysroot/bin/busybox" --list-full)
}

# Map module name -> path once (names normalised: '-' and '_' are the same to the kernel).
declare -A MODPATH=()
initrd_modules_index() {
  local f n
  while IFS= read -r -d '' f; do
    n=${f##*/}; n=${n%.ko}; MODPATH[${n//-/_}]=$f
  done < <(find "$mods/kernel" -name '*.ko' -print0)
}

# Dependency closure of the named modules (from each module's own .modinfo "depends=").
module_closure() {
  local -A seen=()
  local queue=("$@") m key deps d
  while ((${#queue[@]})); do
    m=${queue[0]}; queue=("${queue[@]:1}")
    key=${m//-/_}
    [[ -n ${seen[$key]:-} ]] && continue
    seen[$key]=1
    [[ -n ${MODPATH[$key]:-} ]] || die "module $m not found in $kver (built in? see modules.builtin)"
    deps=$(tr '\0' '\n' <"${MODPATH[$key]}" | sed -n 's/^depends=//p' | tr ',' ' ')
    for d in $deps; do queue+=("$d"); done
  done
  printf '%s\n' "${!seen[@]}"
}

# Copy modules + kernel's module metadata, then depmod with the sysroot's own kmod.
install_modules() {
  local r=$1; shift
  local m rel
  mkdir -p "$r/usr/lib/modules/$kver"
  cp "$mods"/modules.{order,builtin,builtin.modinfo} "$r/usr/lib/modules/$kver/"
  for m in $(module_closure "$@"); do
    rel=${MODPATH[$m]#"$mods"/}
    install -D -m 644 "${MODPATH[$m]}" "$r/usr/lib/modules/$kver/$rel"
  done
  "$sysroot/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
    --library-path "$sysroot/lib/x86_64-linux-gnu:$sysroot/usr/lib/x86_64-linux-gnu" \
    --argv0 depmod "$sysroot/bin/kmod" -b "$r" "$kver"
}

# Node.js: this machine's binary plus the libraries ldd lists that the packages do not provide.
install_node() {
  local r=$1 lib base node_bin
  node_bin=$(readlink -f "$(command -v node)") || die "node not found on PATH"
  install -m 755 "$node_bin" "$r/usr/bin/node"
  while read -r lib; do
    base=${lib##*/}
    if [[ ! -e $r/usr/lib/x86_64-linux-gnu/$base ]]; then
      cp -L "$lib" "$r/usr/lib/x86_64-linux-gnu/$base"
      log "node needs $base: copied from this machine ($lib)"
    fi
  done < <(ldd "$node_bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
  chroot "$r" /usr/bin/env -i /usr/bin/node -e 'process.exit(0)' || die "node does not run inside the new root"
}

# Every dynamically linked binary we rely on must resolve all its libraries inside the root.
check_libs() {
  local r=$1 b res missing=0
  shift
  for b in "$@"; do
    [[ -e $r$b ]] || { echo "build: missing $b" >&2; missing=1; continue; }
    if ! res=$(chroot "$r" /usr/lib64/ld-linux-x86-64.so.2 --list "$b" 2>&1) || grep -q 'not found' <<<"$res"; then
      echo "build: $b cannot load all its libraries inside the initramfs:" >&2
      grep 'not found' <<<"$res" >&2 || echo "$res" >&2
      missing=1
    fi
  done
  return $missing
}

make_cpio() { # dir file
  (cd "$1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) >"$2"
}

# initrd_skip_if_current STAMP FORCE: exits 0 (nothing to do) when $out/.stamp is STAMP and FORCE is
# empty; otherwise starts fresh $work and $out.tmp.
initrd_skip_if_current() {
  if [[ -z ${2:-} && -f $out/.stamp && $(cat "$out/.stamp") == "$1" ]]; then
    log "boot files up to date ($out)"
    exit 0
  fi
  rm -rf "$work" "$out.tmp"
  mkdir -p "$work" "$out.tmp"
}

# copy_sysroot DIR [tar --exclude=...]: everything the packages ship into the usr-merged DIR, except
# the kernel, its modules, docs, man pages, locales and what the caller excludes.
copy_sysroot() {
  local r=$1 top
  shift
  (cd "$sysroot" && tar -c --exclude=./boot --exclude=./lib/modules --exclude=./usr/share/doc \
    --exclude=./usr/share/man --exclude=./usr/share/locale --exclude=./usr/share/lintian \
    --exclude=./.ptc-manifest --exclude=./.ptc-versions "$@" \
    --exclude=./bin --exclude=./sbin --exclude=./lib --exclude=./lib64 .) | (cd "$r" && tar -x)
  for top in bin sbin lib lib64; do
    [[ -d $sysroot/$top ]] || continue
    (cd "$sysroot/$top" && tar -c --exclude=./modules .) | (cd "$r/usr/$top" && tar -x)
  done
  ln -sfn /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$r/usr/lib64/ld-linux-x86-64.so.2"
}

# initrd_publish STAMP: the kernel, the versions and STAMP into $out.tmp, which replaces $out.
initrd_publish() {
  cp "$sysroot/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
  cp "$sysroot/.ptc-versions" "$out.tmp/versions"
  printf '%s\n' "$1" >"$out.tmp/.stamp"
  rm -rf "$out" && mv "$out.tmp" "$out"
  rm -rf "$work"
}
