# Shared by the real-system harnesses (scripts/xen/fetch.sh, scripts/kvm/fetch.sh): host tools,
# `apt-get download` of pinned Debian packages, `dpkg -x` into a sysroot. Source it; it defines
# functions only. Nothing here installs a package into the host except the named host tools.
#
#   debs_host_tools TAG cmd:pkg...         # apt-get install the packages whose command is missing
#   debs_fetch TAG CACHE SCRIPT name=ver...  # download the missing pins into CACHE/debs
#   debs_unpack TAG CACHE name=ver...      # dpkg -x all pins into CACHE/sysroot (only when they changed)
#   deb_file CACHE name ver                # path of a downloaded .deb, or empty

deb_file() { # cache name version -> path of the downloaded .deb, or empty
  local enc=${3//:/%3a}
  compgen -G "$1/debs/${2}_${enc}_*.deb" | head -n1 || true
}

debs_host_tools() { # tag cmd:pkg...
  local tag=$1 t missing=()
  shift
  for t in "$@"; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
  done
  ((${#missing[@]})) || return 0
  printf '%s: installing host tools: %s\n' "$tag" "${missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2; then
    echo "$tag: could not install ${missing[*]} with apt-get (this needs root and a reachable Debian mirror); install them yourself and rerun." >&2
    return 1
  fi
}

debs_fetch() { # tag cache script pin...
  local tag=$1 cache=$2 script=$3 pin
  shift 3
  mkdir -p "$cache/debs"
  local need=()
  for pin in "$@"; do
    [[ -n $(deb_file "$cache" "${pin%%=*}" "${pin#*=}") ]] || need+=("$pin")
  done
  ((${#need[@]})) || return 0
  # Make sure apt knows the pinned versions (a fresh machine may never have run apt-get update).
  # (apt-cache show exits 0 even for an unknown version: count the stanzas it prints instead.)
  known() { [[ $(apt-cache show "$@" 2>/dev/null | grep -c '^Package:') == "$#" ]]; }
  if ! known "${need[@]}"; then
    printf '%s: apt-get update\n' "$tag"
    apt-get update -qq >&2 || true
    for pin in "${need[@]}"; do
      if ! known "$pin"; then
        echo "$tag: Debian no longer offers ${pin%%=*} version ${pin#*=}; the mirror has: $(apt-cache madison "${pin%%=*}" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); printf "%s ", $2}')— update the pin in $script." >&2
        return 1
      fi
    done
  fi
  printf '%s: downloading %s packages into %s\n' "$tag" "${#need[@]}" "$cache/debs"
  (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root "${need[@]}" >&2) || return 1
  for pin in "${need[@]}"; do
    [[ -n $(deb_file "$cache" "${pin%%=*}" "${pin#*=}") ]] || { echo "$tag: download of $pin produced no .deb" >&2; return 1; }
  done
}

debs_unpack() { # tag cache pin...   (DEBS_VERSIONS: text for the sysroot's .ptc-versions)
  local tag=$1 cache=$2 pin
  shift 2
  local manifest sysroot=$cache/sysroot
  manifest=$(printf '%s\n' "$@" | sort)
  if [[ -f $sysroot/.ptc-manifest && $(cat "$sysroot/.ptc-manifest") == "$manifest" ]]; then
    printf '%s: sysroot up to date (%s)\n' "$tag" "$sysroot"
    return 0
  fi
  printf '%s: unpacking %s packages into %s\n' "$tag" "$#" "$sysroot"
  rm -rf "$sysroot.tmp" "$sysroot"
  mkdir -p "$sysroot.tmp"
  for pin in "$@"; do
    dpkg -x "$(deb_file "$cache" "${pin%%=*}" "${pin#*=}")" "$sysroot.tmp" || return 1
  done
  printf '%s\n' "$manifest" >"$sysroot.tmp/.ptc-manifest"
  printf '%s\n' "${DEBS_VERSIONS:-}" >"$sysroot.tmp/.ptc-versions"
  mv "$sysroot.tmp" "$sysroot"
}
