#!/usr/bin/env bash
# Install the Debian packages the tests and backends need, only those missing.
set -euo pipefail
pkgs=(softhsm2 opensc pcscd vsmartcard-vpcd ykcs11 pinentry-tty swtpm swtpm-tools tpm2-tools tpm2-openssl libtss2-dev pkg-config openssl wrk hyperfine time)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system: missing Debian packages: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
