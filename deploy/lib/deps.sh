# Sourced by deploy/test.sh and deploy/quickstart.sh: installs the Debian packages cpx
# needs, only those missing, non-interactively.
CPX_PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
          libzmq3-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev lmdb-utils
          libssl-dev openssl libyaml-dev libjansson-dev libcmocka-dev
          libcsv-dev libmicrohttpd-dev libsodium-dev libcurl4-openssl-dev libpq-dev
          librabbitmq-dev libnats-dev
          protobuf-compiler python3 python3-zmq python3-protobuf python3-cryptography
          postgresql curl faketime chromium fonts-wqy-zenhei)

cpx_install_deps() {
  local missing=() p
  for p in "${CPX_PKGS[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  printf '\n== installing: %s\n' "${missing[*]}"
  local sudo=
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
