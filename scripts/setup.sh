#!/usr/bin/env bash
# Sets up clr on a fresh Debian 12 machine: installs every system package it needs
# with apt, then configures and builds it (Release) in ./build.
#
#   bash scripts/setup.sh           install + build
#   bash scripts/setup.sh --test    install + build + run the whole test suite (ctest), then the
#                                   unit tests under ASan/UBSan and a short run of every fuzz
#                                   target (scripts/sanitize.sh)
#
# Environment: BUILD_DIR (default build), CLR_CMAKE_ARGS (extra cmake arguments),
# CLR_SKIP_APT=1 (do not touch packages: for machines set up otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev                             # LibTorch 1.13 (CPU)
  nlohmann-json3-dev libcli11-dev          # JSON, command line
  libssl-dev                               # SHA-256 (libcrypto)
  libstb-dev libwebp-dev zlib1g-dev        # image decoding (BMP GIF / WebP), gzipped IDX
  libturbojpeg0-dev libpng-dev             # JPEG decoding (libjpeg-turbo), PNG decoding (libpng)
  libsqlite3-dev libtomlplusplus-dev       # SKILL catalog, run configs
  libmicrohttpd-dev                        # clr serve (HTTP server)
  libcpp-httplib-dev                       # the serve tests' HTTP client
  wrk                                      # bench/serve_load.sh (load test of clr serve)
  dataset-fashion-mnist                    # IDX data for tests and the default sequence
  fonts-dejavu-core fonts-dejavu-extra     # glyph tasks of the default sequence
  libgtest-dev libgmock-dev                # tests
  clang libclang-rt-14-dev                 # tests under ASan/UBSan and libFuzzer (scripts/sanitize.sh)
  # The benchmark suite (clr data build, docs/SUITE.md): image assets and fonts, and
  # rsvg-convert to render the SVG ones.
  librsvg2-bin openclipart-svg gnome-cards-data kdegames-mahjongg-data-kf5 kgeography-data
  pingus-data gimp-data mypaint-data extremetuxracer-data
  fonts-freefont-ttf fonts-noto-core culmus fonts-bpg-georgian fonts-sil-abyssinica
  fonts-lohit-deva fonts-lohit-beng-bengali fonts-lohit-taml fonts-tlwg-garuda-ttf
  fonts-tlwg-kinnari-ttf fonts-tlwg-loma-ttf fonts-tlwg-norasi-ttf fonts-nanum
  fonts-unfonts-core fonts-ipafont-gothic fonts-wqy-microhei fonts-khmeros fonts-gfs-didot
  fonts-gfs-artemisia fonts-gfs-neohellenic fonts-urw-base35 fonts-dancingscript
  fonts-kaushanscript fonts-blankenburg fonts-gotico-antiqua fonts-comic-neue
  python3 python3-torch python3-torchvision python3-numpy python3-pil  # reference outputs and test data
  pybind11-dev python3-dev python3-pytest  # the Python module clr (docs/PYTHON.md) and its tests
  python3-protobuf python3-crc32c          # the tests read clr run --tensorboard's files with them
  help2man                                 # the man page (cmake --install, cpack: docs/INSTALL.md)
  chromium                                 # clr report's pages checked in a headless browser (tests/browser)
  curl                                     # docs/GUIDE.md's requests (tests/guide)
)

run_tests=0
for arg in "$@"; do
  case "$arg" in
    --test) run_tests=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --test or --help)" >&2; exit 2 ;;
  esac
done

if [ "${CLR_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup.sh: installing ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
  fi
fi

BUILD_DIR="${BUILD_DIR:-build}"
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCLR_WARNINGS_AS_ERRORS=ON ${CLR_CMAKE_ARGS:-}
cmake --build "$BUILD_DIR"

if [ "$run_tests" = 1 ]; then
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
  bash scripts/sanitize.sh
fi
