#!/usr/bin/env bash
# Run HERE (Debian 12): downloads the Debian packages the GPU machine lacks into
# .deps/debs (git-ignored) so that a device run can carry them. The GPU machine
# has CUDA LibTorch inside python torch, cmake, g++ and nvcc, and no registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .deps/debs
cd .deps/debs
apt-get download nlohmann-json3-dev libcli11-dev libssl-dev libssl3 googletest \
  libstb-dev libwebp-dev libwebp7 zlib1g-dev zlib1g libsqlite3-dev libsqlite3-0 libtomlplusplus-dev libtomlplusplus3 \
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libturbojpeg0-dev libturbojpeg0 \
  libmicrohttpd-dev libmicrohttpd12 libpng-dev libpng16-16
ls -la
# The default sequence's data (dataset-fashion-mnist, fonts-dejavu), for
# scripts/device/compare.sh; setup.sh installs the packages here.
cd ../..
# Only the fonts the config names: the device tool carries at most 64 MiB.
mkdir -p .deps/share/datasets .deps/share/fonts/truetype/dejavu
if [ -d /usr/share/datasets/fashion-mnist ]; then
  cp -r /usr/share/datasets/fashion-mnist .deps/share/datasets/
  for f in $(grep -ho '/usr/share/fonts/[^"]*' configs/fashion-glyphs-6.toml configs/sequence-10.toml | sort -u); do cp "$f" .deps/share/fonts/truetype/dejavu/; done
else
  echo "fetch_debs.sh: no /usr/share/datasets/fashion-mnist here (scripts/setup.sh installs it); .deps/share is left without it" >&2
fi
# The shared libraries alone (3.8 MB), for device calls that carry a binary built in an
# earlier call instead of building again (docs/GPU.md, "Runs without a build"):
# there, `mkdir -p .deps/root && tar -xzf .deps/rt.tgz -C .deps/root` puts them where the
# binary's run path looks.
rt=$(mktemp -d)
for f in .deps/debs/*.deb; do dpkg -x "$f" "$rt"; done
(cd "$rt" && tar -czf "$OLDPWD/.deps/rt.tgz" $(find usr/lib/x86_64-linux-gnu -maxdepth 1 \( -name '*.so.*' -o -type l -name '*.so*' \)))
# Everything the build needs (headers, shared libraries, CMake files, googletest's
# sources) without documentation or static libraries: 4.6 MB of xz against 11 MB of
# .debs, so that a first call can carry it with a binary and the suite's bundle.
# build_and_test.sh unpacks it when it is there (carry .deps/root-slim.tar.xz instead of
# .deps/debs).
rm -rf "$rt"/usr/share/doc "$rt"/usr/share/doc-base "$rt"/usr/share/man "$rt"/usr/share/lintian
find "$rt"/usr/lib -name '*.a' -delete
(cd "$rt" && tar -cJf "$OLDPWD/.deps/root-slim.tar.xz" usr)
rm -rf "$rt"
ls -la .deps/rt.tgz .deps/root-slim.tar.xz
